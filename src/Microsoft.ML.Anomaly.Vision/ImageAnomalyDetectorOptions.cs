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

    /// <summary>
    /// Default of <see cref="MaxImagePixels"/>: 8192 × 8192 pixels (64 megapixels, 256 MiB once decoded), above the
    /// cameras of most inspection lines and far below what a few bytes of a malicious header can claim.
    /// </summary>
    public const long DefaultMaxImagePixels = 8192L * 8192;

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
    /// Largest image, in pixels (width × height), that Fit and scoring accept; a larger image is refused with an error naming
    /// its file (or row), its size and this limit, read from the file's header before any pixel is decoded. An image file
    /// can claim billions of pixels in a few bytes, and each decoded pixel takes four bytes: the limit bounds the memory
    /// one image can take (images are decoded one per core). Default <see cref="DefaultMaxImagePixels"/>; at most
    /// <see cref="Array.MaxLength"/> / 4. The fitted model keeps it.
    /// </summary>
    public long MaxImagePixels { get; set; } = DefaultMaxImagePixels;

    /// <summary>Checks an image size limit; throws <see cref="ArgumentException"/> naming <paramref name="setting"/> and <paramref name="paramName"/>.</summary>
    internal static void ValidateMaxImagePixels(long value, string setting, string paramName)
    {
        if (value < 1 || value > Array.MaxLength / 4)
            throw new ArgumentException($"{setting} must be between 1 and {Array.MaxLength / 4} pixels, not {value}.", paramName);
    }

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
        ValidateMaxImagePixels(MaxImagePixels, nameof(MaxImagePixels), paramName);
        string?[] names = [ScoreColumnName, AnomalyMapColumnName, Threshold.HasValue ? PredictedLabelColumnName : null];
        var distinct = names.Where(n => n is not null).ToList();
        if (distinct.Distinct(StringComparer.Ordinal).Count() != distinct.Count)
            throw new ArgumentException($"The output column names must differ from each other ({string.Join(", ", distinct)}).", paramName);
    }
}
