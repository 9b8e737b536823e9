using Microsoft.ML.Anomaly.Vision.Internal;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Base of the image anomaly detection transformers (CFA, CFlow, DFM): reads an image column, scores each
/// image and adds the columns Score (<see cref="float"/>), AnomalyMap (vector of <see cref="float"/> with
/// dimensions <see cref="InputHeight"/> × <see cref="InputWidth"/>, when the detector makes maps) and, when a
/// threshold is set, PredictedLabel (<see cref="bool"/>).
/// </summary>
/// <remarks>
/// <see cref="Transform(IDataView)"/> is lazy: rows are scored as a cursor reaches them, in batches of
/// <see cref="ScoringBatchSize"/> images read ahead of the cursor. A prediction engine scores one row at a
/// time. Transformers are immutable and can be saved with <c>MLContext.Model.Save</c> and loaded with
/// <c>MLContext.Model.Load</c>.
/// </remarks>
public abstract partial class ImageAnomalyTransformerBase : RowToRowTransformerBase, ITransformer
{
    /// <summary>Largest accepted <see cref="ScoringBatchSize"/>.</summary>
    internal const int MaxScoringBatchSize = 4096;

    private float? _threshold;

    /// <summary>Creates a transformer from fitted state and options (validated here).</summary>
    /// <param name="env">The ML.NET environment.</param>
    /// <param name="registrationName">Name of the component (for messages), e.g. the class name.</param>
    /// <param name="options">Column names, threshold and batch size.</param>
    private protected ImageAnomalyTransformerBase(IHostEnvironment env, string registrationName, ImageAnomalyDetectorOptions options)
        : base(RegisterHost(env, registrationName))
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(nameof(options));
        InputColumnName = options.InputColumnName;
        ScoreColumnName = options.ScoreColumnName;
        RequestedAnomalyMapColumnName = options.AnomalyMapColumnName;
        PredictedLabelColumnName = options.PredictedLabelColumnName;
        _threshold = options.Threshold;
        ScoringBatchSize = options.ScoringBatchSize;
        MaxImagePixels = options.MaxImagePixels;
    }

    /// <summary>Name of the input column (image or image path).</summary>
    public string InputColumnName { get; }

    /// <summary>Name of the score column.</summary>
    public string ScoreColumnName { get; }

    /// <summary>Name of the anomaly map column, or <see langword="null"/> when no map column is produced.</summary>
    public string? AnomalyMapColumnName => ProducesMap ? RequestedAnomalyMapColumnName : null;

    /// <summary>Name of the predicted label column (present only when <see cref="Threshold"/> is set).</summary>
    public string PredictedLabelColumnName { get; }

    /// <summary>Score at or above which an image is predicted anomalous, or <see langword="null"/> when there is no predicted label column.</summary>
    public float? Threshold => _threshold;

    /// <summary>Images scored together when a whole data view is transformed.</summary>
    public int ScoringBatchSize { get; }

    /// <summary>Largest image scored, in pixels (width × height); see <see cref="ImageAnomalyDetectorOptions.MaxImagePixels"/>.</summary>
    public long MaxImagePixels { get; }

    /// <summary>Height in pixels the detector resizes images to; also the height of the anomaly map.</summary>
    public abstract int InputHeight { get; }

    /// <summary>Width in pixels the detector resizes images to; also the width of the anomaly map.</summary>
    public abstract int InputWidth { get; }

    /// <summary>True when the detector computes a pixel-level anomaly map.</summary>
    public abstract bool ProducesMap { get; }

    /// <summary>The anomaly map column name the options asked for (kept even when the detector makes no map).</summary>
    private string? RequestedAnomalyMapColumnName { get; set; }

    /// <summary>
    /// Scores <paramref name="batch"/> images. Called concurrently from several cursors or prediction
    /// engines, so an implementation must be thread-safe.
    /// </summary>
    /// <param name="images">batch × 3 × <see cref="InputHeight"/> × <see cref="InputWidth"/> normalized floats (<see cref="ImageTensorConverter"/>).</param>
    /// <param name="batch">Number of images (at least 1).</param>
    /// <param name="scores">Receives one score per image (<paramref name="batch"/> floats).</param>
    /// <param name="maps">
    /// Receives batch × <see cref="InputHeight"/> × <see cref="InputWidth"/> map values when
    /// <see cref="ProducesMap"/> is true (even when the map column is left out); empty otherwise.
    /// </param>
    private protected abstract void ScoreBatch(ReadOnlySpan<float> images, int batch, Span<float> scores, Span<float> maps);

    /// <summary>
    /// ML.NET version information of the detector: its model signature (8 characters), format versions,
    /// loader signature (at most 24 characters, matching its <c>LoadableClass</c> attribute) and the
    /// assembly holding the loader.
    /// </summary>
    private protected abstract VersionInfo DetectorVersionInfo { get; }

    /// <summary>
    /// Writes the detector's own fields after the common header, into the same checked block. Loading reads them back in
    /// the detector's loading constructor from the field reader the base's loading constructor hands out.
    /// </summary>
    private protected abstract void WriteDetectorFields(BinaryWriter writer);

    /// <summary>Saves the detector's named streams (<see cref="ModelStreams"/>), after its fields.</summary>
    private protected abstract void SaveDetectorStreams(ModelSaveContext ctx);

    /// <summary>
    /// Returns a transformer with the same fitted state that also predicts a label: true when the score is
    /// at or above <paramref name="threshold"/>.
    /// </summary>
    /// <param name="threshold">A finite score threshold.</param>
    public ImageAnomalyTransformerBase WithThreshold(float threshold)
    {
        if (!float.IsFinite(threshold))
            throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "The threshold must be a finite number.");
        var clone = (ImageAnomalyTransformerBase)MemberwiseClone();
        clone._threshold = threshold;
        return clone;
    }

    /// <summary>
    /// Adds the output columns to <paramref name="input"/>. Lazy: images are read and scored when a cursor
    /// reaches their rows, <see cref="ScoringBatchSize"/> at a time.
    /// </summary>
    /// <param name="input">Data with the input column.</param>
    /// <returns>The input columns followed by the output columns.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The input column is missing or is neither an image nor a text column.</exception>
    public new IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        DataViewSchema.Column imageColumn = ImageColumnReader.Find(input.Schema, InputColumnName, nameof(input));
        return new BatchScoringDataView(this, input, imageColumn);
    }

    /// <summary>Builds the row mapper that scores one row at a time (prediction engines, schema propagation).</summary>
    /// <param name="schema">The input schema.</param>
    protected sealed override IRowMapper MakeRowMapper(DataViewSchema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        return new Mapper(this, schema);
    }

    private static IHost RegisterHost(IHostEnvironment env, string registrationName)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentException.ThrowIfNullOrEmpty(registrationName);
        return env.Register(registrationName);
    }

    /// <summary>The output columns, in order: Score, then AnomalyMap (when produced), then PredictedLabel (when a threshold is set).</summary>
    private OutputColumn[] GetOutputColumns()
    {
        var columns = new List<OutputColumn> { new(ScoreColumnName, NumberDataViewType.Single, OutputKind.Score) };
        if (AnomalyMapColumnName is string map)
            columns.Add(new(map, new VectorDataViewType(NumberDataViewType.Single, InputHeight, InputWidth), OutputKind.Map));
        if (_threshold.HasValue)
            columns.Add(new(PredictedLabelColumnName, BooleanDataViewType.Instance, OutputKind.PredictedLabel));
        return [.. columns];
    }

    private enum OutputKind
    {
        Score,
        Map,
        PredictedLabel,
    }

    private readonly record struct OutputColumn(string Name, DataViewType Type, OutputKind Kind);
}
