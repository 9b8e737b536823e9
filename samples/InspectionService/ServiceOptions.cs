namespace InspectionService;

/// <summary>
/// The service's settings: configuration section <c>Inspection</c> (appsettings.json, environment variables
/// <c>Inspection__QueueCapacity</c>, or <c>--Inspection:QueueCapacity=32</c>), with <c>--models</c> and <c>--data</c>
/// as short command-line names for the two folders. Each default is written here only.
/// </summary>
public sealed class ServiceOptions
{
    /// <summary>The configuration section.</summary>
    public const string Section = "Inspection";

    /// <summary>Folder of the detectors: every <c>&lt;name&gt;.zip</c> in it is served as model <c>name</c>. Default: the quickstart's output.</summary>
    public string ModelsFolder { get; set; } = Path.Combine("artifacts", "quickstart");

    /// <summary>Folder of the history: the SQLite database, the inspected images and their overlays.</summary>
    public string DataFolder { get; set; } = Path.Combine("artifacts", "inspection-service");

    /// <summary>Largest accepted image file, in bytes (default 20 MB).</summary>
    public long MaxUploadBytes { get; set; } = 20L * 1024 * 1024;

    /// <summary>Largest accepted image, in pixels (width × height; default 40 megapixels).</summary>
    public long MaxImagePixels { get; set; } = 40_000_000;

    /// <summary>Images waiting to be scored at most; a request that finds the queue full is answered 503 with Retry-After.</summary>
    public int QueueCapacity { get; set; } = 64;

    /// <summary>Queued images of one model scored together in one Transform at most.</summary>
    public int MaxBatchSize { get; set; } = 8;

    /// <summary>Batches scored at once: with two, one batch's single-threaded stretches overlap the other's parallel ones.</summary>
    public int ScoringWorkers { get; set; } = 2;

    /// <summary>Images decoded at once to check them before they are queued (each holds up to 4 × <see cref="MaxImagePixels"/> bytes).</summary>
    public int MaxConcurrentDecodes { get; set; } = Math.Max(2, Environment.ProcessorCount);

    /// <summary>Inspections kept in the history; older records, images and overlays are deleted.</summary>
    public int RetentionCount { get; set; } = 10_000;

    /// <summary>How often the models folder is checked for new, replaced or removed files, in milliseconds.</summary>
    public int ModelPollMilliseconds { get; set; } = 2000;

    /// <summary>Seconds a client is told to wait (Retry-After) when the queue is full.</summary>
    public int RetryAfterSeconds { get; set; } = 1;

    /// <summary>Throws when a setting is out of range, naming it.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ModelsFolder))
            throw new InvalidOperationException($"{Section}:{nameof(ModelsFolder)} (--models) is empty.");
        if (string.IsNullOrWhiteSpace(DataFolder))
            throw new InvalidOperationException($"{Section}:{nameof(DataFolder)} (--data) is empty.");
        Positive(MaxUploadBytes, nameof(MaxUploadBytes));
        Positive(MaxImagePixels, nameof(MaxImagePixels));
        Positive(QueueCapacity, nameof(QueueCapacity));
        Positive(MaxBatchSize, nameof(MaxBatchSize));
        Positive(ScoringWorkers, nameof(ScoringWorkers));
        Positive(MaxConcurrentDecodes, nameof(MaxConcurrentDecodes));
        Positive(RetentionCount, nameof(RetentionCount));
        Positive(ModelPollMilliseconds, nameof(ModelPollMilliseconds));
        Positive(RetryAfterSeconds, nameof(RetryAfterSeconds));
    }

    private static void Positive(long value, string name)
    {
        if (value <= 0)
            throw new InvalidOperationException($"{Section}:{name} must be positive; it is {value}.");
    }
}
