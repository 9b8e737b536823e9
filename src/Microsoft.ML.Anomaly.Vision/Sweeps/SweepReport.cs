using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Anomaly.Vision.Reporting;
using Microsoft.ML.Runtime;
using SkiaSharp;

namespace Microsoft.ML.Anomaly.Vision.Sweeps;

/// <summary>
/// Writes a finished sweep's outputs: <c>sweep.json</c>, <c>sweep-metric.png</c> (the metric per trial),
/// <c>overlays/</c> (the best trial on validation images), <c>sweep.html</c> and <c>best-model.zip</c>.
/// Everything is written into a staging folder first and then renamed into place file by file, so a failure or a
/// cancellation leaves no partial file behind and an earlier sweep's files stay whole until replaced.
/// </summary>
internal static class SweepReport
{
    public const string JsonFile = "sweep.json";
    public const string HtmlFile = "sweep.html";
    public const string PlotFile = "sweep-metric.png";
    public const string OverlayFolder = "overlays";
    public const string ModelFile = "best-model.zip";
    private const string StagingPrefix = ".sweep-staging-";

    /// <summary>
    /// Checks, before a sweep runs its first trial, that <paramref name="folder"/> can take the report: it is created
    /// when missing, and a staging folder (as <see cref="Write"/> makes) is created in it and removed.
    /// </summary>
    /// <exception cref="IOException">The folder cannot be created or written (names the folder; the cause is the inner exception).</exception>
    public static void CheckWritable(string folder)
    {
        string staging = Path.Combine(folder, StagingPrefix + Guid.NewGuid().ToString("N"));
        try
        {
            Directory.CreateDirectory(folder);
            Directory.CreateDirectory(staging);
            File.WriteAllBytes(Path.Combine(staging, JsonFile), []);
            Directory.Delete(staging, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            try
            {
                if (Directory.Exists(staging))
                    Directory.Delete(staging, recursive: true);
            }
            catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException)
            {
            }
            throw new IOException(
                $"The sweep's output folder '{Path.GetFullPath(folder)}' cannot be written ({e.Message.TrimEnd('.')}); choose another " +
                $"{nameof(ImageDetectorSweepOptions.OutputFolder)} or fix its permissions. No trial was run.", e);
        }
    }

    public static void Write(string folder, SweepResult sweep, SweepValidationSet data, float[]? bestScores, float[]? bestMaps,
        IHostEnvironment env, DataViewSchema inputSchema, int overlayCount, CancellationToken cancellation)
    {
        Directory.CreateDirectory(folder);
        string staging = Path.Combine(folder, StagingPrefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(staging);
        try
        {
            var overlays = new List<(string Png, string Caption)>();
            if (sweep.BestTrial is SweepTrialResult best && bestMaps is { Length: > 0 } && bestScores is not null)
                overlays = WriteOverlays(Path.Combine(staging, OverlayFolder), best.ImageSize, data, bestScores, bestMaps, overlayCount, cancellation);
            cancellation.ThrowIfCancellationRequested();
            WritePlot(sweep, Path.Combine(staging, PlotFile));
            File.WriteAllText(Path.Combine(staging, JsonFile), ToJson(sweep), new UTF8Encoding(false));
            WriteHtml(sweep, Path.Combine(staging, HtmlFile), overlays.Select(o => (Path.Combine(OverlayFolder, Path.GetFileName(o.Png)), o.Caption)).ToList());
            if (sweep.BestModel is not null)
                new ModelOperationsCatalog(env).Save(sweep.BestModel, inputSchema, Path.Combine(staging, ModelFile));
            cancellation.ThrowIfCancellationRequested();

            // Rename into place: the overlay folder, then each file (File.Move within one folder is a rename).
            string overlayTarget = Path.Combine(folder, OverlayFolder);
            if (Directory.Exists(overlayTarget))
                Directory.Delete(overlayTarget, recursive: true);
            if (Directory.Exists(Path.Combine(staging, OverlayFolder)))
                Directory.Move(Path.Combine(staging, OverlayFolder), overlayTarget);
            foreach (string name in new[] { ModelFile, PlotFile, JsonFile, HtmlFile })
            {
                string staged = Path.Combine(staging, name);
                if (File.Exists(staged))
                    File.Move(staged, Path.Combine(folder, name), overwrite: true);
            }
        }
        finally
        {
            try
            {
                Directory.Delete(staging, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static List<(string Png, string Caption)> WriteOverlays(string folder, int size, SweepValidationSet data, float[] scores, float[] maps,
        int count, CancellationToken cancellation)
    {
        var written = new List<(string, string)>();
        int pixels = size * size;
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        foreach (float v in maps)
        {
            min = Math.Min(min, v);
            max = Math.Max(max, v);
        }
        if (!(max > min) || !float.IsFinite(min) || !float.IsFinite(max))
            return written;
        // Anomalous images first, then good ones, alternating so both kinds show.
        var anomalous = Enumerable.Range(0, data.Count).Where(i => data.Labels[i] && data.ImagePaths[i] is not null);
        var good = Enumerable.Range(0, data.Count).Where(i => !data.Labels[i] && data.ImagePaths[i] is not null);
        var chosen = anomalous.Take((count + 1) / 2).Concat(good.Take(count / 2)).ToList();
        Directory.CreateDirectory(folder);
        foreach (int i in chosen)
        {
            cancellation.ThrowIfCancellationRequested();
            string png = Path.Combine(folder, $"{i:D3}_{(data.Labels[i] ? "defect" : "good")}.png");
            string? mask = data.MaskPaths is { } masks && masks[i].Length > 0 ? masks[i] : null;
            AnomalyReport.WriteOverlay(data.ImagePaths[i]!, maps.AsSpan(i * pixels, pixels), size, size, scores[i], mask, min, max, png);
            written.Add((png, $"{Path.GetFileName(data.ImagePaths[i])} ({(data.Labels[i] ? "defect" : "good")}), score {scores[i].ToString("0.###", CultureInfo.InvariantCulture)}"));
        }
        return written;
    }

    internal static string ToJson(SweepResult sweep)
    {
        static object? Metrics(ImageAnomalyMetrics? m) => m is null ? null : new
        {
            image_auroc = m.ImageAuroc,
            image_f1 = m.ImageF1Max,
            pixel_auroc = m.PixelAuroc,
            pixel_f1 = m.PixelF1Max,
            aupro = m.Aupro,
        };
        var document = new
        {
            metric = sweep.Metric.ToString(),
            validation = sweep.SyntheticValidation ? "synthetic" : "labelled",
            training_images = sweep.TrainingImages,
            validation_images = sweep.ValidationImages,
            seed = sweep.Seed,
            wall_seconds = Math.Round(sweep.WallSeconds, 3),
            summed_standalone_fit_seconds = Math.Round(sweep.SummedStandaloneFitSeconds, 3),
            summed_standalone_seconds = Math.Round(sweep.SummedStandaloneSeconds, 3),
            time_budget_reached = sweep.TimeBudgetReached,
            best_trial = sweep.BestTrial?.Number,
            feature_extractions = sweep.FeatureExtractions.Select(e => new
            {
                image_size = e.ImageSize,
                backbone = e.Backbone,
                layers = e.Layers,
                training_images = e.TrainingImages,
                validation_images = e.ValidationImages,
                seconds = Math.Round(e.Seconds, 3),
            }),
            trials = sweep.Leaderboard.Select((t, rank) => new
            {
                rank = rank + 1,
                trial = t.Number,
                detector = t.Detector.ToString(),
                image_size = t.ImageSize,
                settings = t.Settings.ToDictionary(s => s.Key, s => s.Value),
                metric_value = t.MetricValue,
                metrics = Metrics(t.Metrics),
                fit_seconds = Math.Round(t.FitSeconds, 3),
                train_seconds = Math.Round(t.TrainSeconds, 3),
                validation_seconds = Math.Round(t.ValidationSeconds, 3),
                images_per_second = Math.Round(t.ScoringImagesPerSecond, 3),
                error = t.Error,
            }),
        };
        return JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>The metric of each trial in run order, one colour per detector, the best trial ringed.</summary>
    private static void WritePlot(SweepResult sweep, string outputPng, int width = 720, int height = 400)
    {
        using var surface = SkiaDrawing.CreateSurface(width, height);
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        const float fontSize = 13f;
        using var font = new SKFont(SkiaDrawing.Font, fontSize);
        using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var grid = new SKPaint { Color = new SKColor(225, 225, 225), StrokeWidth = 1, Style = SKPaintStyle.Stroke };
        using var axis = new SKPaint { Color = SKColors.Black, StrokeWidth = 1, Style = SKPaintStyle.Stroke, IsAntialias = true };
        var area = new SKRect(60, 52, width - 20, height - 50);
        int n = Math.Max(1, sweep.Trials.Count);
        var values = sweep.Trials.Where(t => t.MetricValue.HasValue).Select(t => t.MetricValue!.Value).ToList();
        double low = values.Count == 0 ? 0 : Math.Min(0.5, Math.Floor(values.Min() * 10) / 10), high = 1;
        float X(int trial) => area.Left + (area.Width * (trial - 0.5f) / n);
        float Y(double v) => area.Bottom - (float)((v - low) / (high - low) * area.Height);
        for (int i = 0; i <= 5; i++)
        {
            double v = low + ((high - low) * i / 5);
            string label = v.ToString("0.00", CultureInfo.InvariantCulture);
            canvas.DrawLine(area.Left, Y(v), area.Right, Y(v), grid);
            canvas.DrawText(label, area.Left - SkiaDrawing.Measure(font, label) - 6, Y(v) + 4, font, text);
        }
        canvas.DrawRect(area, axis);
        foreach (SweepTrialResult t in sweep.Trials)
        {
            string number = t.Number.ToString(CultureInfo.InvariantCulture);
            if (n <= 40 || t.Number % 5 == 0)
                canvas.DrawText(number, X(t.Number) - (SkiaDrawing.Measure(font, number) / 2), area.Bottom + 16, font, text);
            if (t.MetricValue is not double v)
                continue;
            using var dot = new SKPaint { Color = RocPlotRenderer.Palette[(int)t.Detector], IsAntialias = true, Style = SKPaintStyle.Fill };
            canvas.DrawCircle(X(t.Number), Y(v), 5, dot);
            if (t == sweep.BestTrial)
                canvas.DrawCircle(X(t.Number), Y(v), 9, axis);
        }
        string title = $"Validation {sweep.Metric} per trial ({(sweep.SyntheticValidation ? "synthetic defects" : "labelled set")}); circled: the best";
        canvas.DrawText(title, area.Left, 20, font, text);
        canvas.DrawText("trial", ((area.Left + area.Right) / 2) - 12, height - 14, font, text);
        float legendX = area.Right - 190;
        foreach (SweepDetector detector in Enum.GetValues<SweepDetector>())
        {
            using var dot = new SKPaint { Color = RocPlotRenderer.Palette[(int)detector], IsAntialias = true, Style = SKPaintStyle.Fill };
            canvas.DrawCircle(legendX, 38, 5, dot);
            canvas.DrawText(detector.ToString().ToUpperInvariant(), legendX + 9, 43, font, text);
            legendX += 62;
        }
        canvas.Flush();
        SkiaDrawing.SavePng(surface, outputPng);
    }

    private static void WriteHtml(SweepResult sweep, string outputHtml, IReadOnlyList<(string Png, string Caption)> overlays)
    {
        static string F(double? v) => v is double d ? d.ToString("F4", CultureInfo.InvariantCulture) : "&ndash;";
        static string E(string s) => WebUtility.HtmlEncode(s);
        static string L(string path) => WebUtility.HtmlEncode(path.Replace('\\', '/'));
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Detector sweep</title>\n")
            .Append("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}th,td{border:1px solid #999;padding:3px 8px;text-align:right}")
            .Append("td.c{text-align:left}figure{display:inline-block;margin:6px;text-align:center}figure img{width:160px}")
            .Append("figcaption{font-size:12px;max-width:160px;word-wrap:break-word}</style>\n</head>\n<body>\n<h1>Detector sweep</h1>\n<p>")
            .Append(CultureInfo.InvariantCulture, $"{sweep.Trials.Count} trials maximising {E(sweep.Metric.ToString())} on ")
            .Append(sweep.SyntheticValidation ? "synthetic defects pasted onto held-out training images" : "the labelled validation set")
            .Append(CultureInfo.InvariantCulture, $" ({sweep.ValidationImages} validation images, {sweep.TrainingImages} training images, seed {sweep.Seed}). ")
            .Append(CultureInfo.InvariantCulture, $"Wall time {sweep.WallSeconds:F1} s; fitting and validating each trial on its own would take {sweep.SummedStandaloneSeconds:F1} s (fits alone {sweep.SummedStandaloneFitSeconds:F1} s); ")
            .Append(CultureInfo.InvariantCulture, $"backbone features were extracted {sweep.FeatureExtractions.Count} time(s).")
            .Append(sweep.TimeBudgetReached ? " The time budget stopped the sweep." : "")
            .Append("</p>\n<img src=\"").Append(PlotFile).Append("\" alt=\"metric per trial\">\n<h2>Leaderboard</h2>\n<table>\n")
            .Append("<tr><th>Rank</th><th>Trial</th><th>").Append(E(sweep.Metric.ToString()))
            .Append("</th><th>Image AUROC</th><th>Image F1</th><th>Pixel AUROC</th><th>AUPRO</th><th>Fit s</th><th>Images/s</th><th>Configuration</th></tr>\n");
        int rank = 0;
        foreach (SweepTrialResult t in sweep.Leaderboard)
        {
            rank++;
            html.Append(CultureInfo.InvariantCulture, $"<tr><td>{rank}</td><td>{t.Number}</td><td>{F(t.MetricValue)}</td><td>{F(t.Metrics?.ImageAuroc)}</td>")
                .Append(CultureInfo.InvariantCulture, $"<td>{F(t.Metrics?.ImageF1Max)}</td><td>{F(t.Metrics?.PixelAuroc)}</td><td>{F(t.Metrics?.Aupro)}</td>")
                .Append(CultureInfo.InvariantCulture, $"<td>{t.FitSeconds:F1}</td><td>{t.ScoringImagesPerSecond:F1}</td><td class=\"c\">{E(t.Description)}")
                .Append(t.Error is null ? "" : " <b>failed:</b> " + E(t.Error)).Append("</td></tr>\n");
        }
        html.Append("</table>\n");
        if (sweep.BestTrial is SweepTrialResult best)
        {
            html.Append("<h2>Best trial on validation images</h2>\n<p>").Append(E(best.Description)).Append("</p>\n<div>\n");
            foreach (var (png, caption) in overlays)
                html.Append("<figure><a href=\"").Append(L(png)).Append("\"><img src=\"").Append(L(png)).Append("\" alt=\"").Append(E(caption))
                    .Append("\"></a><figcaption>").Append(E(caption)).Append("</figcaption></figure>\n");
            html.Append("</div>\n");
        }
        html.Append("</body>\n</html>\n");
        File.WriteAllText(outputHtml, html.ToString(), new UTF8Encoding(false));
    }
}
