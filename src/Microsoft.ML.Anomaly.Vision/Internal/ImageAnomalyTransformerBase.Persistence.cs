using Microsoft.ML.Anomaly.Vision.Internal;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision;

public abstract partial class ImageAnomalyTransformerBase
{
    // Version of the common header below (independent of each detector's VersionInfo).
    // 1: first version (format 1.1: fields in the model stream, names in ML.NET's string table).
    // 2: the fields form one checked block (ModelStreams) with names inline (format 1.2).
    // 3: adds the image size limit (MaxImagePixels) (format 1.3); a version 2 header loads with the default limit.
    private const int HeaderVersion = 3;
    private const int FirstCheckedHeaderVersion = 2;
    private const int LegacyHeaderVersion = 1;

    // *** Binary format *** (the transformer's own stream)
    // format 1.2 on: a checked block (ModelStreams.WriteBlock) whose payload is the fields below, names as
    //             byte 1 + length-prefixed UTF-8 (byte 0 for a null name); then the detector's named streams
    // format 1.1: the fields below directly in the stream, names as ids in ML.NET's string table
    // int: header version (HeaderVersion; 1 in format 1.1)
    // name: input column name
    // name: score column name
    // name or null: anomaly map column name (null when the map column is left out)
    // name: predicted label column name
    // byte: 1 when a threshold is set, 0 otherwise
    // float: the threshold (finite; 0 when none is set)
    // int: scoring batch size (1 to MaxScoringBatchSize)
    // long: largest image in pixels, 1 to Array.MaxLength / 4 (header version 3 on)
    // then the detector's fields (WriteDetectorFields), then its streams (SaveDetectorStreams)

    /// <summary>
    /// Loading constructor: checks the model's version information against <paramref name="versionInfo"/>
    /// and reads the common header. The detector's loading constructor then reads its own fields from
    /// <paramref name="fields"/> and its streams from <paramref name="ctx"/>.
    /// </summary>
    /// <param name="env">The ML.NET environment.</param>
    /// <param name="registrationName">Name of the component (for messages), e.g. the class name.</param>
    /// <param name="ctx">The load context positioned at the transformer's model stream.</param>
    /// <param name="versionInfo">The detector's version information (the same value its saving side uses).</param>
    /// <param name="fields">Receives the reader of the detector's own fields, after the common header.</param>
    /// <exception cref="FormatException">
    /// The model was written by another component or a version this library cannot read, or it is damaged, truncated or
    /// holds invalid values; the message names the stream or field.
    /// </exception>
    private protected ImageAnomalyTransformerBase(IHostEnvironment env, string registrationName, ModelLoadContext ctx, VersionInfo versionInfo,
        out ModelFieldReader fields)
        : base(RegisterHost(env, registrationName))
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ctx.CheckAtModel(versionInfo);
        fields = ModelFieldReader.Open(ctx, $"{registrationName} model");
        BinaryReader reader = fields.Reader;
        // *** Binary format *** (see above)
        try
        {
            int version = reader.ReadInt32();
            bool checkedLayout = ModelStreams.IsChecked(ctx);
            if (checkedLayout ? version < FirstCheckedHeaderVersion || version > HeaderVersion : version != LegacyHeaderVersion)
            {
                throw new FormatException(checkedLayout
                    ? $"The model's detector header has version {version}; this library reads versions {FirstCheckedHeaderVersion} to {HeaderVersion} there."
                    : $"The model's detector header has version {version}; this library reads version {LegacyHeaderVersion} there.");
            }
            InputColumnName = fields.ReadString();
            ScoreColumnName = fields.ReadString();
            RequestedAnomalyMapColumnName = fields.ReadStringOrNull();
            if (RequestedAnomalyMapColumnName is { Length: 0 })
                throw new FormatException("The anomaly map column name is empty.");
            PredictedLabelColumnName = fields.ReadString();
            byte hasThreshold = reader.ReadByte();
            if (hasThreshold > 1)
                throw new FormatException($"The threshold flag is {hasThreshold}; 0 or 1 was expected.");
            float threshold = reader.ReadSingle();
            if (!float.IsFinite(threshold))
                throw new FormatException($"The threshold {threshold} is not finite.");
            _threshold = hasThreshold == 1 ? threshold : null;
            ScoringBatchSize = reader.ReadInt32();
            if (ScoringBatchSize < 1 || ScoringBatchSize > MaxScoringBatchSize)
                throw new FormatException($"The scoring batch size {ScoringBatchSize} is outside 1 to {MaxScoringBatchSize}.");
            MaxImagePixels = version >= 3 ? reader.ReadInt64() : ImageAnomalyDetectorOptions.DefaultMaxImagePixels;
            if (MaxImagePixels < 1 || MaxImagePixels > Array.MaxLength / 4)
                throw new FormatException($"The image size limit {MaxImagePixels} is outside 1 to {Array.MaxLength / 4} pixels.");
        }
        catch (Exception ex) when (ex is EndOfStreamException or FormatException or InvalidDataException)
        {
            throw new FormatException($"The {registrationName} model's header is invalid: {ex.Message}", ex);
        }
    }

    /// <summary>Saves the version information, the common header and the detector's fields as one checked block, then the detector's streams.</summary>
    /// <param name="ctx">The save context.</param>
    protected sealed override void SaveModel(ModelSaveContext ctx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ctx.CheckAtModel();
        VersionInfo version = DetectorVersionInfo;
        if (version.VerWrittenCur < ModelStreams.FirstCheckedVersion)
            throw new InvalidOperationException($"{GetType().Name} declares format 0x{version.VerWrittenCur:X8}, but models are written in the checked layout of 0x{ModelStreams.FirstCheckedVersion:X8} or later.");
        ctx.SetVersionInfo(version);
        // *** Binary format *** (see above)
        ModelStreams.WriteBlock(ctx.Writer, writer =>
        {
            writer.Write(HeaderVersion);
            ModelFieldReader.WriteStringOrNull(writer, InputColumnName);
            ModelFieldReader.WriteStringOrNull(writer, ScoreColumnName);
            ModelFieldReader.WriteStringOrNull(writer, RequestedAnomalyMapColumnName);
            ModelFieldReader.WriteStringOrNull(writer, PredictedLabelColumnName);
            writer.Write((byte)(_threshold.HasValue ? 1 : 0));
            writer.Write(_threshold ?? 0f);
            writer.Write(ScoringBatchSize);
            writer.Write(MaxImagePixels);
            WriteDetectorFields(writer);
        });
        SaveDetectorStreams(ctx);
    }
}
