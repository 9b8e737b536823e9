using System.Collections.Immutable;
using System.Reflection;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;

namespace InspectionService;

/// <summary>A model file that could not be loaded, as <c>/health</c> shows it.</summary>
public sealed record ModelLoadFailure(string Name, string File, string Error, DateTimeOffset At);

/// <summary>
/// The models served: every <c>&lt;name&gt;.zip</c> in the models folder, loaded at start and then checked every
/// <see cref="ServiceOptions.ModelPollMilliseconds"/> for new, replaced and removed files.
/// </summary>
/// <remarks>
/// A file is read into memory once, hashed, and loaded from those bytes, so the version a response names is exactly the
/// bytes that scored it, whatever happens to the file meanwhile. A new version is swapped in by replacing the immutable
/// name → version map in one write; lookups never lock. A file that does not load (damaged, foreign, half-copied) is
/// recorded as a failure and the version already loaded under that name keeps serving; the file is tried again when its
/// size or time changes. A threshold file beside a model is part of its state: a change to either reloads both.
/// </remarks>
public sealed class ModelCatalog : IHostedService, IDisposable
{
    private readonly ServiceOptions _options;
    private readonly ILogger<ModelCatalog> _log;
    private readonly Dictionary<string, FileStamp> _seen = new(StringComparer.Ordinal);
    private readonly Lock _scanLock = new();
    private ImmutableDictionary<string, DetectorVersion> _versions = ImmutableDictionary.Create<string, DetectorVersion>(StringComparer.Ordinal);
    private ImmutableDictionary<string, ModelLoadFailure> _failures = ImmutableDictionary.Create<string, ModelLoadFailure>(StringComparer.Ordinal);
    private CancellationTokenSource? _stop;
    private Task? _poll;

    /// <summary>Creates the catalog over the configured models folder.</summary>
    public ModelCatalog(IOptions<ServiceOptions> options, ILogger<ModelCatalog> log)
    {
        _options = options.Value;
        _log = log;
        Folder = Path.GetFullPath(_options.ModelsFolder);
    }

    /// <summary>The models folder, as a full path.</summary>
    public string Folder { get; }

    /// <summary>The versions now serving, by name.</summary>
    public IReadOnlyDictionary<string, DetectorVersion> Versions => Volatile.Read(ref _versions);

    /// <summary>Files that did not load, by model name (cleared when a later version of the file loads or the file goes).</summary>
    public IReadOnlyDictionary<string, ModelLoadFailure> Failures => Volatile.Read(ref _failures);

    /// <summary>Takes a lease on the version now serving <paramref name="name"/>, or returns null when there is none.</summary>
    public DetectorVersion? Acquire(string name)
    {
        // A version retired between the lookup and the lease was just replaced: the map already holds its successor.
        for (int attempt = 0; attempt < 8; attempt++)
        {
            if (!Versions.TryGetValue(name, out DetectorVersion? version))
                return null;
            if (version.TryAcquire())
                return version;
        }
        return null;
    }

    /// <summary>Loads the folder's models before the service takes requests, then watches the folder.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!Directory.Exists(Folder))
            _log.LogWarning("The models folder {Folder} does not exist; no model is served until it holds a <name>.zip file", Folder);
        Scan();
        _log.LogInformation("Serving {Count} model(s) from {Folder}: {Names}", Versions.Count, Folder, string.Join(", ", Versions.Keys.Order()));
        _stop = new CancellationTokenSource();
        _poll = PollAsync(_stop.Token);
        return Task.CompletedTask;
    }

    /// <summary>Stops watching the folder.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_stop is null || _poll is null)
            return;
        await _stop.CancelAsync();
        await _poll.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <summary>Retires every version (each is disposed when its last request is answered).</summary>
    public void Dispose()
    {
        _stop?.Dispose();
        var versions = Interlocked.Exchange(ref _versions, _versions.Clear());
        foreach (var version in versions.Values)
            version.Release();
    }

    /// <summary>Brings the served models in line with the folder: loads new and changed files, drops removed ones.</summary>
    public void Scan()
    {
        lock (_scanLock)
        {
            var files = Directory.Exists(Folder)
                ? Directory.EnumerateFiles(Folder, "*.zip").ToDictionary(ModelName, StringComparer.Ordinal)
                : new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (name, path) in files)
            {
                var stamp = FileStamp.Of(path, ThresholdPath(path));
                if (_seen.TryGetValue(name, out FileStamp? seen) && seen == stamp)
                    continue;
                _seen[name] = stamp;
                Load(name, path);
            }
            foreach (string gone in _seen.Keys.Except(files.Keys).ToList())
            {
                _seen.Remove(gone);
                ImmutableInterlocked.TryRemove(ref _failures, gone, out _);
                if (ImmutableInterlocked.TryRemove(ref _versions, gone, out DetectorVersion? removed))
                {
                    _log.LogInformation("Model {Model} version {Version} is no longer served: its file was removed", gone, removed.Sha256);
                    removed.Release();
                }
            }
        }
    }

    private void Load(string name, string path)
    {
        try
        {
            byte[] bytes = File.ReadAllBytes(path);
            string sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
            float? fileThreshold = ReadThresholdFile(ThresholdPath(path));
            if (Versions.TryGetValue(name, out DetectorVersion? current) && current.Sha256 == sha && current.Threshold == (current.Detector.Threshold ?? fileThreshold))
            {
                ImmutableInterlocked.TryRemove(ref _failures, name, out _);
                return;
            }
            DetectorVersion version = LoadVersion(name, bytes, sha, fileThreshold);
            ImmutableInterlocked.AddOrUpdate(ref _versions, name, version, (_, _) => version);
            ImmutableInterlocked.TryRemove(ref _failures, name, out _);
            if (current is not null && !ReferenceEquals(current, version))
                current.Release();
            _log.LogInformation("Model {Model} ({Algorithm}, {Height}×{Width}) version {Version} loaded from {File}; threshold {Threshold} ({ThresholdSource}){Replaced}",
                name, version.Algorithm, version.Detector.InputHeight, version.Detector.InputWidth, sha, path,
                version.Threshold?.ToString("G9") ?? "none", version.ThresholdSource ?? "none",
                current is null ? "" : $", replacing version {current.Sha256}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or InvalidDataException
                                       or InvalidOperationException or ArgumentException or TargetInvocationException or JsonException
                                       or NotSupportedException)
        {
            string reason = Describe(ex);
            ImmutableInterlocked.AddOrUpdate(ref _failures, name, _ => new ModelLoadFailure(name, path, reason, DateTimeOffset.UtcNow),
                (_, _) => new ModelLoadFailure(name, path, reason, DateTimeOffset.UtcNow));
            bool serving = Versions.TryGetValue(name, out DetectorVersion? kept);
            _log.LogError("Model file {File} was refused: {Reason}. {Kept}", path, reason,
                serving ? $"Version {kept!.Sha256} keeps serving." : "No version of this model is served.");
        }
    }

    private static DetectorVersion LoadVersion(string name, byte[] bytes, string sha, float? fileThreshold)
    {
        ITransformer loaded;
        try
        {
            using var stream = new MemoryStream(bytes, writable: false);
            loaded = new MLContext(seed: 0).Model.Load(stream, out _);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // ML.NET wraps a model's own loading errors, and reports a file that is no ML.NET model with its own exceptions.
            throw new InvalidDataException($"not a loadable ML.NET model: {Describe(ex)}", ex);
        }
        if (loaded is not ImageAnomalyTransformerBase detector)
        {
            (loaded as IDisposable)?.Dispose();
            throw new InvalidDataException($"the file holds a {loaded.GetType().Name}, not an image anomaly detector (CFA, DFM or CFlow) saved by Anomaly.Vision");
        }
        float? threshold = detector.Threshold ?? fileThreshold;
        string? source = detector.Threshold is not null ? "model" : fileThreshold is not null ? "file" : null;
        return new DetectorVersion(name, sha, detector, threshold, source, DateTimeOffset.UtcNow);
    }

    /// <summary>Reads <c>{ "threshold": number }</c>, or returns null when there is no such file.</summary>
    private static float? ReadThresholdFile(string path)
    {
        if (!File.Exists(path))
            return null;
        using JsonDocument json = JsonDocument.Parse(File.ReadAllBytes(path));
        if (json.RootElement.ValueKind != JsonValueKind.Object
            || !json.RootElement.TryGetProperty("threshold", out JsonElement value)
            || value.ValueKind != JsonValueKind.Number
            || !float.IsFinite(value.GetSingle()))
            throw new InvalidDataException($"'{Path.GetFileName(path)}' must hold {{ \"threshold\": <finite number> }}");
        return value.GetSingle();
    }

    private async Task PollAsync(CancellationToken stop)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(_options.ModelPollMilliseconds));
        try
        {
            while (await timer.WaitForNextTickAsync(stop))
            {
                try
                {
                    await Task.Run(Scan, stop);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    _log.LogWarning(ex, "Checking the models folder {Folder} failed; trying again at the next check", Folder);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    private static string ModelName(string zipPath) => Path.GetFileNameWithoutExtension(zipPath);

    /// <summary><c>&lt;name&gt;.threshold.json</c> beside <c>&lt;name&gt;.zip</c>.</summary>
    public static string ThresholdPath(string zipPath) => Path.ChangeExtension(zipPath, ".threshold.json");

    /// <summary>The message of the error, with its cause's when ML.NET wrapped it (reflection wrappers left out).</summary>
    private static string Describe(Exception ex)
    {
        while (ex is TargetInvocationException { InnerException: { } inner })
            ex = inner;
        Exception? cause = ex.InnerException;
        while (cause is TargetInvocationException { InnerException: { } deeper })
            cause = deeper;
        return cause is null || ex.Message.Contains(cause.Message, StringComparison.Ordinal) ? ex.Message : $"{ex.Message} ({cause.Message})";
    }

    /// <summary>Size and write time of a model file and of its threshold file: a change to either means "load again".</summary>
    private sealed record FileStamp(long Length, DateTime Written, long ThresholdLength, DateTime ThresholdWritten)
    {
        public static FileStamp Of(string zip, string threshold)
        {
            var model = new FileInfo(zip);
            var json = new FileInfo(threshold);
            return new FileStamp(model.Length, model.LastWriteTimeUtc,
                json.Exists ? json.Length : -1, json.Exists ? json.LastWriteTimeUtc : default);
        }
    }
}
