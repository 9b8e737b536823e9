using Microsoft.ML.Anomaly.Vision;

namespace InspectionService;

/// <summary>
/// One loaded version of a model file: the detector, its threshold, and what the API shows about it.
/// </summary>
/// <remarks>
/// A version stays usable while requests hold a lease on it, even after a newer file replaced it: the catalog holds
/// one lease until it retires the version, each request one until it is answered, and the last lease released
/// disposes the detector. So a swap never pulls a model from under a request in flight, and an old version's native
/// memory is freed as soon as its last request is done.
/// </remarks>
public sealed class DetectorVersion
{
    private int _leases = 1;

    internal DetectorVersion(string name, string sha256, ImageAnomalyTransformerBase detector, float? threshold,
        string? thresholdSource, DateTimeOffset loadedAt)
    {
        Name = name;
        Sha256 = sha256;
        Detector = detector;
        Threshold = threshold;
        ThresholdSource = thresholdSource;
        LoadedAt = loadedAt;
        Algorithm = detector switch
        {
            CfaTransformer => "cfa",
            DfmTransformer => "dfm",
            CflowTransformer => "cflow",
            _ => detector.GetType().Name.Replace("Transformer", "", StringComparison.Ordinal).ToLowerInvariant(),
        };
    }

    /// <summary>The model's name: its file name without <c>.zip</c>.</summary>
    public string Name { get; }

    /// <summary>The version: SHA-256 of the model file's bytes, lower-case hex.</summary>
    public string Sha256 { get; }

    /// <summary>cfa, dfm or cflow.</summary>
    public string Algorithm { get; }

    /// <summary>The detector (never disposed while a lease is held).</summary>
    public ImageAnomalyTransformerBase Detector { get; }

    /// <summary>Score at or above which an image is anomalous, or null when the model has none.</summary>
    public float? Threshold { get; }

    /// <summary>"model" (saved with WithThreshold), "file" (<c>&lt;name&gt;.threshold.json</c>), or null.</summary>
    public string? ThresholdSource { get; }

    /// <summary>When this version was loaded.</summary>
    public DateTimeOffset LoadedAt { get; }

    /// <summary>The backbone the detector stands on, when it has one.</summary>
    public BackboneDescription? Backbone => (Detector as BackboneAnomalyTransformerBase)?.BackboneDescription;

    /// <summary>Takes a lease; false when the version was retired and its last lease already released.</summary>
    public bool TryAcquire()
    {
        int leases = Volatile.Read(ref _leases);
        while (leases > 0)
        {
            int seen = Interlocked.CompareExchange(ref _leases, leases + 1, leases);
            if (seen == leases)
                return true;
            leases = seen;
        }
        return false;
    }

    /// <summary>Gives a lease back; the last one disposes the detector.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _leases) == 0)
            (Detector as IDisposable)?.Dispose();
    }
}
