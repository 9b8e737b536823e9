namespace InspectionService;

/// <summary>The service's routes: health, models, inspect, and the history.</summary>
public static class InspectionEndpoints
{
    /// <summary>Most records one history request returns.</summary>
    public const int MaxHistoryLimit = 500;

    /// <summary>Records a history request returns when it names no limit.</summary>
    public const int DefaultHistoryLimit = 50;

    /// <summary>Maps the routes.</summary>
    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapGet("/health", (ModelCatalog catalog) =>
        {
            var versions = catalog.Versions.Values.OrderBy(v => v.Name, StringComparer.Ordinal)
                .Select(v => new { name = v.Name, version = v.Sha256 }).ToList();
            var failures = catalog.Failures.Values.OrderBy(f => f.Name, StringComparer.Ordinal)
                .Select(f => new { name = f.Name, file = f.File, error = f.Error, at = f.At }).ToList();
            bool healthy = failures.Count == 0 && versions.Count > 0;
            string status = healthy ? "healthy" : versions.Count == 0 ? "no models" : "degraded";
            return Results.Json(new { status, modelsFolder = catalog.Folder, models = versions, failed = failures },
                statusCode: healthy ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        });

        app.MapGet("/api/models", (ModelCatalog catalog) => catalog.Versions.Values.OrderBy(v => v.Name, StringComparer.Ordinal).Select(v => new
        {
            name = v.Name,
            algorithm = v.Algorithm,
            version = v.Sha256,
            inputHeight = v.Detector.InputHeight,
            inputWidth = v.Detector.InputWidth,
            producesMap = v.Detector.ProducesMap,
            threshold = v.Threshold,
            thresholdSource = v.ThresholdSource,
            backbone = v.Backbone?.ToString(),
            loadedAt = v.LoadedAt,
        }));

        app.MapPost("/api/inspect/{model}", (string model, bool? map, HttpRequest request, InspectionHandler handler, CancellationToken cancellationToken) =>
            handler.InspectAsync(model, map ?? false, request, cancellationToken));

        app.MapGet("/api/inspections", async (string? limit, IInspectionStore store, CancellationToken cancellationToken) =>
        {
            int count = DefaultHistoryLimit;
            if (limit is not null && (!int.TryParse(limit, out count) || count < 1 || count > MaxHistoryLimit))
                return InspectionHandler.Problem(StatusCodes.Status400BadRequest, "Bad limit",
                    $"limit must be a whole number from 1 to {MaxHistoryLimit}; it is '{limit}'.");
            var records = await store.ListAsync(count, cancellationToken);
            return Results.Ok(records.Select(View));
        });

        app.MapGet("/api/inspections/{id}", async (string id, IInspectionStore store, CancellationToken cancellationToken) =>
            await store.GetAsync(id, cancellationToken) is { } record ? Results.Ok(View(record)) : NotFound(id));

        app.MapGet("/api/inspections/{id}/overlay.png", async (string id, IInspectionStore store, InspectionHandler handler, CancellationToken cancellationToken) =>
        {
            var record = await store.GetAsync(id, cancellationToken);
            if (record is null)
                return NotFound(id);
            return record.OverlayPath is null
                ? InspectionHandler.Problem(StatusCodes.Status404NotFound, "No overlay", $"Model '{record.Model}' makes no anomaly map, so inspection '{id}' has no overlay.")
                : Results.File(handler.Full(record.OverlayPath), "image/png");
        });

        app.MapGet("/api/inspections/{id}/image", async (string id, IInspectionStore store, InspectionHandler handler, CancellationToken cancellationToken) =>
        {
            var record = await store.GetAsync(id, cancellationToken);
            if (record is null)
                return NotFound(id);
            string contentType = Path.GetExtension(record.ImagePath) switch { ".png" => "image/png", ".jpg" => "image/jpeg", _ => "image/bmp" };
            return Results.File(handler.Full(record.ImagePath), contentType);
        });
    }

    private static IResult NotFound(string id) =>
        InspectionHandler.Problem(StatusCodes.Status404NotFound, "Unknown inspection", $"No inspection with id '{id}' is in the history.");

    private static object View(InspectionRecord r) => new
    {
        id = r.Id,
        time = r.Time,
        model = r.Model,
        modelVersion = r.ModelVersion,
        score = r.Score,
        threshold = r.Threshold,
        isAnomalous = r.IsAnomalous,
        imageSha256 = r.ImageSha256,
        fileName = r.FileName,
        elapsedMs = r.ElapsedMs,
        imageUrl = $"/api/inspections/{r.Id}/image",
        overlayUrl = r.OverlayPath is null ? null : $"/api/inspections/{r.Id}/overlay.png",
    };
}
