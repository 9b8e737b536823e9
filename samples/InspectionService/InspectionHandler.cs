using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Options;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Anomaly.Vision.Reporting;

namespace InspectionService;

/// <summary>The answer to an inspection.</summary>
public sealed record InspectionResponse(
    string Id, string Model, string ModelVersion, float Score, float? Threshold, bool? IsAnomalous, double ElapsedMs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? OverlayPng);

/// <summary>
/// One inspection from upload to answer: checks the upload, stores the image, queues it on the model version it leased,
/// draws the overlay and writes the history record.
/// </summary>
/// <remarks>
/// Nothing is half-stored: a refused upload writes nothing, and an image whose scoring or record fails is deleted with
/// its overlay. The lease on the model version is held until the queued job has finished (even when the client has
/// gone), so a swap never disposes a detector that is still scoring.
/// </remarks>
public sealed class InspectionHandler
{
    private readonly ModelCatalog _catalog;
    private readonly InspectionQueue _queue;
    private readonly IInspectionStore _store;
    private readonly InspectionMetrics _metrics;
    private readonly ServiceOptions _options;
    private readonly ILogger<InspectionHandler> _log;
    private readonly SemaphoreSlim _decodes;

    /// <summary>Creates the handler.</summary>
    public InspectionHandler(ModelCatalog catalog, InspectionQueue queue, IInspectionStore store, InspectionMetrics metrics,
        IOptions<ServiceOptions> options, ILogger<InspectionHandler> log)
    {
        _catalog = catalog;
        _queue = queue;
        _store = store;
        _metrics = metrics;
        _options = options.Value;
        _log = log;
        _decodes = new SemaphoreSlim(_options.MaxConcurrentDecodes);
        DataFolder = Path.GetFullPath(_options.DataFolder);
        Directory.CreateDirectory(Path.Combine(DataFolder, "images"));
        Directory.CreateDirectory(Path.Combine(DataFolder, "overlays"));
    }

    /// <summary>The data folder, as a full path; records hold paths relative to it.</summary>
    public string DataFolder { get; }

    /// <summary>Inspects the multipart field <c>image</c> of <paramref name="request"/> with model <paramref name="model"/>.</summary>
    public async Task<IResult> InspectAsync(string model, bool withMap, HttpRequest request, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        DetectorVersion? version = _catalog.Acquire(model);
        if (version is null)
        {
            _metrics.Request(model, "refused");
            string known = string.Join(", ", _catalog.Versions.Keys.Order());
            return Problem(StatusCodes.Status404NotFound, "Unknown model",
                $"No model named '{model}' is served; the models are: {(known.Length > 0 ? known : "none")}.");
        }
        try
        {
            (byte[] bytes, string fileName) = await ReadUploadAsync(request, cancellationToken);
            await _decodes.WaitAsync(cancellationToken);
            string extension;
            try
            {
                extension = UploadedImage.Extension(UploadedImage.Check(bytes, fileName, _options.MaxImagePixels));
            }
            finally
            {
                _decodes.Release();
            }
            return await ScoreAndRecordAsync(version, bytes, fileName, extension, withMap, clock, cancellationToken);
        }
        catch (RefusedUploadException refused)
        {
            _metrics.Request(model, "refused");
            _log.LogInformation("Refused an image for model {Model}: {Reason}", model, refused.Message);
            return Problem(refused.Status, refused.Title, refused.Message);
        }
        finally
        {
            version.Release();
        }
    }

    private async Task<IResult> ScoreAndRecordAsync(DetectorVersion version, byte[] bytes, string fileName, string extension,
        bool withMap, Stopwatch clock, CancellationToken cancellationToken)
    {
        string id = Guid.NewGuid().ToString("N");
        string imagePath = Path.Combine("images", id + extension);
        string? overlayPath = null;
        try
        {
            AtomicFile.WriteAllBytes(Full(imagePath), bytes);
            Task<ScoredImage>? job = _queue.TryEnqueue(version, Full(imagePath), cancellationToken);
            if (job is null)
            {
                DeleteFiles(imagePath, null);
                _metrics.Request(version.Name, "busy");
                return Problem(StatusCodes.Status503ServiceUnavailable, "Busy",
                    $"The queue holds {_options.QueueCapacity} images already; try again in {_options.RetryAfterSeconds} s.",
                    retryAfterSeconds: _options.RetryAfterSeconds);
            }
            ScoredImage scored;
            try
            {
                scored = await job;
            }
            catch (InvalidDataException ex)
            {
                DeleteFiles(imagePath, null);
                _metrics.Request(version.Name, "refused");
                return Problem(StatusCodes.Status400BadRequest, "Damaged image", $"The uploaded image '{fileName}' could not be read by the model: {ex.Message}");
            }

            var detector = version.Detector;
            if (scored.Map is float[] map)
            {
                overlayPath = Path.Combine("overlays", id + ".png");
                // The map stretched over its own range: the colours show where this image differs most, the score how much.
                float min = map.Min(), max = map.Max();
                AnomalyReport.WriteOverlay(Full(imagePath), map, detector.InputHeight, detector.InputWidth, scored.Score, null,
                    min, max > min ? max : min + 1, Full(overlayPath));
            }
            bool? anomalous = version.Threshold is float threshold ? scored.Score >= threshold : null;
            double elapsedMs = clock.Elapsed.TotalMilliseconds;
            var record = new InspectionRecord(id, DateTimeOffset.UtcNow, version.Name, version.Sha256, scored.Score, version.Threshold, anomalous,
                Convert.ToHexStringLower(SHA256.HashData(bytes)), fileName, imagePath, overlayPath, elapsedMs);
            var expired = await _store.AddAsync(record, _options.RetentionCount, CancellationToken.None);
            foreach (var old in expired)
                DeleteFiles(old.ImagePath, old.OverlayPath);

            _metrics.Request(version.Name, "scored");
            _metrics.Scored(version.Name, clock.Elapsed, anomalous);
            _log.LogInformation("Inspection {Id}: model {Model} version {Version} scored {File} {Score} ({Verdict}) in {ElapsedMs:F1} ms",
                id, version.Name, version.Sha256, fileName, scored.Score, anomalous switch { true => "anomalous", false => "good", null => "no threshold" }, elapsedMs);
            string? overlayPng = withMap && overlayPath is not null ? Convert.ToBase64String(await File.ReadAllBytesAsync(Full(overlayPath), CancellationToken.None)) : null;
            return Results.Ok(new InspectionResponse(id, version.Name, version.Sha256, scored.Score, version.Threshold, anomalous, elapsedMs, overlayPng));
        }
        catch (OperationCanceledException)
        {
            // The client went away before its image was scored: nothing of it is kept.
            DeleteFiles(imagePath, overlayPath);
            throw;
        }
        catch (Exception ex)
        {
            DeleteFiles(imagePath, overlayPath);
            _metrics.Request(version.Name, "failed");
            _log.LogError(ex, "Inspection of {File} with model {Model} failed", fileName, version.Name);
            throw;
        }
    }

    /// <summary>Reads the multipart field <c>image</c>, within the size limit.</summary>
    private async Task<(byte[] Bytes, string FileName)> ReadUploadAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        if (!request.HasFormContentType)
            throw new RefusedUploadException(StatusCodes.Status415UnsupportedMediaType, "Not a form",
                "Send the image as multipart/form-data in a field named 'image' (curl -F image=@part.png ...).");
        IFormCollection form;
        try
        {
            form = await request.ReadFormAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is InvalidDataException or BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge })
        {
            throw TooLarge("the request");
        }
        IFormFile? file = form.Files.GetFile("image");
        if (file is null)
            throw new RefusedUploadException(StatusCodes.Status400BadRequest, "Missing image",
                form.Files.Count == 0
                    ? "The form has no file; send the image in a field named 'image'."
                    : $"The form has no field named 'image' (it has: {string.Join(", ", form.Files.Select(f => $"'{f.Name}'"))}).");
        string fileName = Path.GetFileName(file.FileName);
        if (file.Length > _options.MaxUploadBytes)
            throw TooLarge($"'{fileName}' ({file.Length} bytes)");
        var bytes = new byte[file.Length];
        await using (Stream stream = file.OpenReadStream())
            await stream.ReadExactlyAsync(bytes, cancellationToken);
        return (bytes, fileName.Length > 0 ? fileName : "image");
    }

    private RefusedUploadException TooLarge(string what) => new(StatusCodes.Status413PayloadTooLarge, "Image too large",
        $"The upload limit is {_options.MaxUploadBytes} bytes ({_options.MaxUploadBytes / (1024.0 * 1024):0.#} MB); {what} is larger.");

    /// <summary>A path of the data folder, from the relative path a record holds.</summary>
    public string Full(string relative) => Path.Combine(DataFolder, relative);

    private void DeleteFiles(string imagePath, string? overlayPath)
    {
        foreach (string? path in new[] { imagePath, overlayPath })
        {
            if (path is null)
                continue;
            try
            {
                File.Delete(Full(path));
            }
            catch (IOException ex)
            {
                _log.LogWarning("Could not delete {File}: {Error}", path, ex.Message);
            }
        }
    }

    /// <summary>A problem-details answer.</summary>
    public static IResult Problem(int status, string title, string detail, int? retryAfterSeconds = null)
    {
        IResult problem = Results.Problem(detail: detail, statusCode: status, title: title);
        return retryAfterSeconds is int seconds ? new WithRetryAfter(problem, seconds) : problem;
    }

    private sealed class WithRetryAfter(IResult inner, int seconds) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return inner.ExecuteAsync(httpContext);
        }
    }
}
