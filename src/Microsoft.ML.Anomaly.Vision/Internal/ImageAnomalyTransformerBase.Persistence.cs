using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision;

public abstract partial class ImageAnomalyTransformerBase
{
    // Version of the common header below (independent of each detector's VersionInfo).
    // 1: first version.
    private const int HeaderVersion = 1;

    // *** Binary format *** (common header, written by every detector before its own payload)
    // int: header version (HeaderVersion)
    // int: string id of the input column name
    // int: string id of the score column name
    // int: string id of the anomaly map column name, or -1 when the map column is left out
    // int: string id of the predicted label column name
    // byte: 1 when a threshold is set, 0 otherwise
    // float: the threshold (finite; 0 when none is set)
    // int: scoring batch size (1 to MaxScoringBatchSize)
    // then the detector's payload (SaveDetector)

    /// <summary>
    /// Loading constructor: checks the model's version information against <paramref name="versionInfo"/>
    /// and reads the common header. The detector's loading constructor then reads its own payload.
    /// </summary>
    /// <param name="env">The ML.NET environment.</param>
    /// <param name="registrationName">Name of the component (for messages), e.g. the class name.</param>
    /// <param name="ctx">The load context positioned at the transformer's model stream.</param>
    /// <param name="versionInfo">The detector's version information (the same value its saving side uses).</param>
    /// <exception cref="FormatException">The model was written by another component or a version this library cannot read.</exception>
    /// <exception cref="InvalidDataException">The header is truncated or holds invalid values.</exception>
    private protected ImageAnomalyTransformerBase(IHostEnvironment env, string registrationName, ModelLoadContext ctx, VersionInfo versionInfo)
        : base(RegisterHost(env, registrationName))
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ctx.CheckAtModel(versionInfo);
        // *** Binary format *** (see above)
        try
        {
            int version = ctx.Reader.ReadInt32();
            if (version != HeaderVersion)
                throw new FormatException($"The model's detector header has version {version}; this library reads version {HeaderVersion}.");
            InputColumnName = ctx.LoadNonEmptyString();
            ScoreColumnName = ctx.LoadNonEmptyString();
            RequestedAnomalyMapColumnName = ctx.LoadStringOrNull();
            if (RequestedAnomalyMapColumnName is { Length: 0 })
                throw new InvalidDataException("The anomaly map column name is empty.");
            PredictedLabelColumnName = ctx.LoadNonEmptyString();
            byte hasThreshold = ctx.Reader.ReadByte();
            if (hasThreshold > 1)
                throw new InvalidDataException($"The threshold flag is {hasThreshold}; 0 or 1 was expected.");
            float threshold = ctx.Reader.ReadSingle();
            if (!float.IsFinite(threshold))
                throw new InvalidDataException($"The threshold {threshold} is not finite.");
            _threshold = hasThreshold == 1 ? threshold : null;
            ScoringBatchSize = ctx.Reader.ReadInt32();
            if (ScoringBatchSize < 1 || ScoringBatchSize > MaxScoringBatchSize)
                throw new InvalidDataException($"The scoring batch size {ScoringBatchSize} is outside 1 to {MaxScoringBatchSize}.");
        }
        catch (EndOfStreamException ex)
        {
            throw new InvalidDataException($"The {registrationName} model's header is truncated.", ex);
        }
        catch (InvalidDataException ex)
        {
            throw new InvalidDataException($"The {registrationName} model's header is invalid: {ex.Message}", ex);
        }
    }

    /// <summary>Saves the version information, the common header and then the detector's payload.</summary>
    /// <param name="ctx">The save context.</param>
    protected sealed override void SaveModel(ModelSaveContext ctx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ctx.CheckAtModel();
        ctx.SetVersionInfo(DetectorVersionInfo);
        // *** Binary format *** (see above)
        ctx.Writer.Write(HeaderVersion);
        ctx.SaveNonEmptyString(InputColumnName);
        ctx.SaveNonEmptyString(ScoreColumnName);
        ctx.SaveStringOrNull(RequestedAnomalyMapColumnName);
        ctx.SaveNonEmptyString(PredictedLabelColumnName);
        ctx.Writer.Write((byte)(_threshold.HasValue ? 1 : 0));
        ctx.Writer.Write(_threshold ?? 0f);
        ctx.Writer.Write(ScoringBatchSize);
        SaveDetector(ctx);
    }
}
