namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Column and scoring settings shared by the image anomaly detectors (CFA, CFlow, DFM).
/// </summary>
public abstract class ImageAnomalyDetectorOptions
{
    /// <summary>Default name of the input image column.</summary>
    public const string DefaultInputColumnName = "Image";

    /// <summary>Default name of the score column.</summary>
    public const string DefaultScoreColumnName = "Score";

    /// <summary>Default name of the anomaly map column.</summary>
    public const string DefaultAnomalyMapColumnName = "AnomalyMap";

    /// <summary>Default name of the predicted label column.</summary>
    public const string DefaultPredictedLabelColumnName = "PredictedLabel";

    /// <summary>Creates options with the default column names, no threshold and batches of 8 images.</summary>
    protected ImageAnomalyDetectorOptions()
    {
    }

    /// <summary>
    /// Input column: an image column (<c>MLImage</c>, e.g. from <c>LoadImages</c>) or a text column of image
    /// file paths. Images of any size are resized to the detector's input size.
    /// </summary>
    public string InputColumnName { get; set; } = DefaultInputColumnName;

    /// <summary>Output column of the image anomaly score (<see cref="float"/>; higher is more anomalous).</summary>
    public string ScoreColumnName { get; set; } = DefaultScoreColumnName;

    /// <summary>
    /// Output column of the anomaly map: a vector of <see cref="float"/> with dimensions
    /// (input height, input width), row-major. <see langword="null"/> leaves the column out.
    /// </summary>
    public string? AnomalyMapColumnName { get; set; } = DefaultAnomalyMapColumnName;

    /// <summary>Output column of the predicted label (<see cref="bool"/>, <c>Score &gt;= Threshold</c>), present only when <see cref="Threshold"/> is set.</summary>
    public string PredictedLabelColumnName { get; set; } = DefaultPredictedLabelColumnName;

    /// <summary>Score at or above which an image is predicted anomalous; <see langword="null"/> for no predicted label column.</summary>
    public float? Threshold { get; set; }

    /// <summary>Images scored together when a whole data view is transformed (positive).</summary>
    public int ScoringBatchSize { get; set; } = 8;

    /// <summary>
    /// Checks the settings; throws <see cref="ArgumentException"/> naming <paramref name="paramName"/> and the property at fault.
    /// </summary>
    /// <param name="paramName">Name of the argument that carried these options.</param>
    internal void Validate(string paramName)
    {
        if (string.IsNullOrWhiteSpace(InputColumnName))
            throw new ArgumentException($"{nameof(InputColumnName)} must be a non-empty column name.", paramName);
        if (string.IsNullOrWhiteSpace(ScoreColumnName))
            throw new ArgumentException($"{nameof(ScoreColumnName)} must be a non-empty column name.", paramName);
        if (AnomalyMapColumnName is not null && string.IsNullOrWhiteSpace(AnomalyMapColumnName))
            throw new ArgumentException($"{nameof(AnomalyMapColumnName)} must be a non-empty column name, or null to leave the map out.", paramName);
        if (string.IsNullOrWhiteSpace(PredictedLabelColumnName))
            throw new ArgumentException($"{nameof(PredictedLabelColumnName)} must be a non-empty column name.", paramName);
        if (Threshold is float t && !float.IsFinite(t))
            throw new ArgumentException($"{nameof(Threshold)} must be a finite number, not {t}.", paramName);
        if (ScoringBatchSize < 1 || ScoringBatchSize > ImageAnomalyTransformerBase.MaxScoringBatchSize)
            throw new ArgumentException($"{nameof(ScoringBatchSize)} must be between 1 and {ImageAnomalyTransformerBase.MaxScoringBatchSize}, not {ScoringBatchSize}.", paramName);
        string?[] names = [ScoreColumnName, AnomalyMapColumnName, Threshold.HasValue ? PredictedLabelColumnName : null];
        var distinct = names.Where(n => n is not null).ToList();
        if (distinct.Distinct(StringComparer.Ordinal).Count() != distinct.Count)
            throw new ArgumentException($"The output column names must differ from each other ({string.Join(", ", distinct)}).", paramName);
    }
}
