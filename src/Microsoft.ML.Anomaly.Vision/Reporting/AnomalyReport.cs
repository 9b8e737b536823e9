using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.ML.Anomaly.Vision.Evaluation;
using SkiaSharp;

namespace Microsoft.ML.Anomaly.Vision.Reporting;

/// <summary>
/// Visual reports for image anomaly detection: per-image PNG overlays of the anomaly map, a ROC-curve PNG,
/// and an HTML page with metrics, the ROC curve and overlay thumbnails.
/// </summary>
public static class AnomalyReport
{
    /// <summary>Weight of the colour-mapped anomaly map when blended over the image (as anomalib's overlays use).</summary>
    public const float MapOpacity = 0.4f;

    /// <summary>
    /// Writes a PNG of <paramref name="height"/>×<paramref name="width"/> pixels: the input image resized
    /// (bilinear) to the map size, the anomaly map in a jet colour map (blue = <paramref name="mapMin"/>,
    /// red = <paramref name="mapMax"/>, values clamped) blended on top with <see cref="MapOpacity"/>, the
    /// ground-truth contour in white when a mask is given, and the image score in the top-left corner.
    /// </summary>
    /// <param name="imagePath">The input image (any format MLImage reads).</param>
    /// <param name="map">Row-major anomaly map of <paramref name="height"/>×<paramref name="width"/> values.</param>
    /// <param name="height">Map height.</param>
    /// <param name="width">Map width.</param>
    /// <param name="score">The image score printed in the corner.</param>
    /// <param name="maskPath">Ground-truth mask (pixel &gt; 0 = anomalous; resized by nearest neighbour), or null / empty for none.</param>
    /// <param name="mapMin">Map value shown as the coldest colour (e.g. the minimum over the test set).</param>
    /// <param name="mapMax">Map value shown as the hottest colour; must be greater than <paramref name="mapMin"/>.</param>
    /// <param name="outputPng">The PNG file to write (its folder is created).</param>
    /// <exception cref="ArgumentException">Sizes do not match, or <paramref name="mapMax"/> ≤ <paramref name="mapMin"/>.</exception>
    /// <exception cref="FileNotFoundException">The image or mask file does not exist.</exception>
    /// <exception cref="InvalidDataException">
    /// The image or mask file is not a complete image, not a regular file, or larger than
    /// <see cref="ImageAnomalyDetectorOptions.DefaultMaxImagePixels"/> pixels.
    /// </exception>
    public static void WriteOverlay(string imagePath, ReadOnlySpan<float> map, int height, int width, float score,
        string? maskPath, float mapMin, float mapMax, string outputPng)
    {
        ArgumentException.ThrowIfNullOrEmpty(imagePath);
        ArgumentException.ThrowIfNullOrEmpty(outputPng);
        if (height <= 0)
            throw new ArgumentOutOfRangeException(nameof(height), height, "The map height must be positive.");
        if (width <= 0)
            throw new ArgumentOutOfRangeException(nameof(width), width, "The map width must be positive.");
        if (map.Length != height * width)
            throw new ArgumentException($"The map has {map.Length} values, expected {height}×{width} = {height * width}.", nameof(map));
        if (!float.IsFinite(mapMin) || !float.IsFinite(mapMax) || !(mapMax > mapMin))
            throw new ArgumentException($"The colour range needs finite mapMin < mapMax, got [{mapMin}, {mapMax}].", nameof(mapMax));

        var source = ImagePixels.LoadRgb(imagePath, ImageAnomalyDetectorOptions.DefaultMaxImagePixels, out int imageHeight, out int imageWidth);
        var rgb = ImagePixels.ResizeRgb(source, imageHeight, imageWidth, height, width);
        var mask = string.IsNullOrWhiteSpace(maskPath) ? null : ImagePixels.LoadMask(maskPath, height, width, ImageAnomalyDetectorOptions.DefaultMaxImagePixels);
        var pixels = ComposeOverlay(rgb, map, height, width, mask, mapMin, mapMax);

        var rgba = new byte[height * width * 4];
        for (int i = 0; i < height * width; i++)
        {
            rgba[(i * 4) + 0] = pixels[(i * 3) + 0];
            rgba[(i * 4) + 1] = pixels[(i * 3) + 1];
            rgba[(i * 4) + 2] = pixels[(i * 3) + 2];
            rgba[(i * 4) + 3] = 255;
        }
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var surface = SkiaDrawing.CreateSurface(width, height);
        using (var image = SKImage.FromPixelCopy(info, rgba, width * 4))
            surface.Canvas.DrawImage(image, 0, 0);
        DrawScore(surface.Canvas, width, score);
        SkiaDrawing.SavePng(surface, outputPng);
    }

    /// <summary>
    /// Writes an image-level ROC-curve PNG with one line per entry (legend: name and AUROC) and the chance diagonal.
    /// </summary>
    /// <param name="curves">Per algorithm (legend name): image scores and labels (true = anomalous).</param>
    /// <param name="outputPng">The PNG file to write (its folder is created).</param>
    /// <param name="width">Image width in pixels.</param>
    /// <param name="height">Image height in pixels.</param>
    /// <exception cref="ArgumentException">No curve is given, or a curve has a single class or mismatched lengths.</exception>
    public static void WriteRocCurve(IReadOnlyDictionary<string, (float[] Scores, bool[] Labels)> curves, string outputPng,
        int width = 640, int height = 480)
    {
        ArgumentNullException.ThrowIfNull(curves);
        ArgumentException.ThrowIfNullOrEmpty(outputPng);
        if (curves.Count == 0)
            throw new ArgumentException("At least one ROC curve is needed.", nameof(curves));
        if (width < 100 || height < 100)
            throw new ArgumentOutOfRangeException(nameof(width), "The plot must be at least 100×100 pixels.");

        var lines = new List<(string Label, double[] Fpr, double[] Tpr)>();
        foreach (var (name, (scores, labels)) in curves)
        {
            if (scores is null || labels is null)
                throw new ArgumentException($"ROC curve '{name}' has no scores or labels.", nameof(curves));
            try
            {
                var bins = ExactScoreBins.Create(scores, labels);
                double auroc = AnomalyMetricMath.Auroc(bins.Negatives, bins.Positives, "image");
                var (fpr, tpr) = AnomalyMetricMath.RocCurve(bins.Negatives, bins.Positives, "image");
                lines.Add(($"{name} (AUROC {auroc.ToString("F4", CultureInfo.InvariantCulture)})", fpr, tpr));
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"ROC curve '{name}': {e.Message}", nameof(curves), e);
            }
        }
        RocPlotRenderer.Write(lines, outputPng, width, height);
    }

    /// <summary>
    /// Writes an HTML report: a metrics table (one row per algorithm), the ROC image, and a grid of overlay
    /// thumbnails each linking to its full-size PNG. Image paths are written relative to the HTML file.
    /// </summary>
    /// <param name="outputHtml">The HTML file to write (its folder is created).</param>
    /// <param name="metrics">Metrics per algorithm name.</param>
    /// <param name="rocPng">The ROC-curve PNG, or null for none.</param>
    /// <param name="thumbnails">Overlays to show: algorithm, PNG path, caption (e.g. file name and score).</param>
    /// <param name="title">The page title.</param>
    public static void WriteHtml(string outputHtml, IReadOnlyDictionary<string, ImageAnomalyMetrics> metrics, string? rocPng,
        IReadOnlyList<(string Algorithm, string OverlayPng, string Caption)> thumbnails, string title = "Anomaly detection report")
    {
        ArgumentException.ThrowIfNullOrEmpty(outputHtml);
        ArgumentNullException.ThrowIfNull(metrics);
        ArgumentNullException.ThrowIfNull(thumbnails);
        ArgumentNullException.ThrowIfNull(title);
        string folder = Path.GetDirectoryName(Path.GetFullPath(outputHtml))!;
        string Link(string path) => WebUtility.HtmlEncode(Path.GetRelativePath(folder, Path.GetFullPath(path)).Replace('\\', '/'));
        static string F(double? v) => v is double d ? d.ToString("F4", CultureInfo.InvariantCulture) : "&ndash;";
        static string E(string s) => WebUtility.HtmlEncode(s);

        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>").Append(E(title)).Append("</title>\n");
        html.Append("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}th,td{border:1px solid #999;padding:4px 10px;text-align:right}")
            .Append("th:first-child,td:first-child{text-align:left}figure{display:inline-block;margin:6px;text-align:center}")
            .Append("figure img{width:160px;image-rendering:pixelated}figcaption{font-size:12px;max-width:160px;word-wrap:break-word}</style>\n</head>\n<body>\n");
        html.Append("<h1>").Append(E(title)).Append("</h1>\n<h2>Metrics</h2>\n<table>\n<tr><th>Algorithm</th><th>Image AUROC</th><th>Image F1-max</th>")
            .Append("<th>Image threshold</th><th>Pixel AUROC</th><th>Pixel F1-max</th><th>Pixel threshold</th><th>AUPRO (FPR&le;0.3)</th><th>Good / anomalous images</th></tr>\n");
        foreach (var (name, m) in metrics)
        {
            ArgumentNullException.ThrowIfNull(m, nameof(metrics));
            html.Append("<tr><td>").Append(E(name)).Append("</td><td>").Append(F(m.ImageAuroc)).Append("</td><td>").Append(F(m.ImageF1Max))
                .Append("</td><td>").Append(F(m.ImageF1Threshold)).Append("</td><td>").Append(F(m.PixelAuroc)).Append("</td><td>")
                .Append(F(m.PixelF1Max)).Append("</td><td>").Append(F(m.PixelF1Threshold)).Append("</td><td>").Append(F(m.Aupro))
                .Append("</td><td>").Append(m.GoodImages.ToString(CultureInfo.InvariantCulture)).Append(" / ")
                .Append(m.AnomalousImages.ToString(CultureInfo.InvariantCulture)).Append("</td></tr>\n");
        }
        html.Append("</table>\n");
        if (!string.IsNullOrEmpty(rocPng))
            html.Append("<h2>ROC curve</h2>\n<img src=\"").Append(Link(rocPng)).Append("\" alt=\"ROC curve\">\n");
        if (thumbnails.Count > 0)
        {
            html.Append("<h2>Anomaly maps</h2>\n");
            foreach (var group in thumbnails.GroupBy(t => t.Algorithm))
            {
                html.Append("<h3>").Append(E(group.Key)).Append("</h3>\n<div>\n");
                foreach (var (_, png, caption) in group)
                {
                    string link = Link(png);
                    html.Append("<figure><a href=\"").Append(link).Append("\"><img src=\"").Append(link).Append("\" alt=\"")
                        .Append(E(caption)).Append("\"></a><figcaption>").Append(E(caption)).Append("</figcaption></figure>\n");
                }
                html.Append("</div>\n");
            }
        }
        html.Append("</body>\n</html>\n");
        EnsureFolder(outputHtml);
        AtomicFile.WriteAllText(outputHtml, html.ToString());
    }

    /// <summary>
    /// Blends the jet-coloured map over RGB pixels and draws the mask contour; returns RGB bytes.
    /// </summary>
    internal static byte[] ComposeOverlay(byte[] rgb, ReadOnlySpan<float> map, int height, int width, bool[]? mask, float mapMin, float mapMax)
    {
        var result = new byte[height * width * 3];
        double range = (double)mapMax - mapMin;
        for (int i = 0; i < height * width; i++)
        {
            double t = Math.Clamp((map[i] - (double)mapMin) / range, 0, 1);
            if (double.IsNaN(t))
                t = 0;
            var (r, g, b) = Jet(t);
            result[(i * 3) + 0] = Blend(rgb[(i * 3) + 0], r);
            result[(i * 3) + 1] = Blend(rgb[(i * 3) + 1], g);
            result[(i * 3) + 2] = Blend(rgb[(i * 3) + 2], b);
        }
        if (mask is not null)
        {
            for (int y = 0; y < height; y++)
            {
                for (int x = 0; x < width; x++)
                {
                    int i = (y * width) + x;
                    if (!mask[i])
                        continue;
                    bool edge = y == 0 || x == 0 || y == height - 1 || x == width - 1
                        || !mask[i - width] || !mask[i + width] || !mask[i - 1] || !mask[i + 1];
                    if (edge)
                    {
                        result[(i * 3) + 0] = 255;
                        result[(i * 3) + 1] = 255;
                        result[(i * 3) + 2] = 255;
                    }
                }
            }
        }
        return result;
    }

    /// <summary>Jet colour map: dark blue (0) → blue → cyan → yellow → red → dark red (1), channels 0..255.</summary>
    internal static (byte R, byte G, byte B) Jet(double t)
    {
        static byte C(double v) => (byte)Math.Round(255 * Math.Clamp(v, 0, 1));
        return (C(1.5 - Math.Abs((4 * t) - 3)), C(1.5 - Math.Abs((4 * t) - 2)), C(1.5 - Math.Abs((4 * t) - 1)));
    }

    private static byte Blend(byte image, byte color) =>
        (byte)Math.Round(((1 - MapOpacity) * image) + (MapOpacity * color));

    private static void DrawScore(SKCanvas canvas, int width, float score)
    {
        string text = "score " + score.ToString("0.###", CultureInfo.InvariantCulture);
        float size = Math.Clamp(width / 16f, 9f, 32f);
        using var font = new SKFont(SkiaDrawing.Font, size);
        using var background = new SKPaint { Color = new SKColor(0, 0, 0, 160), IsAntialias = false };
        using var foreground = new SKPaint { Color = SKColors.White, IsAntialias = true };
        float textWidth = SkiaDrawing.Measure(font, text);
        float pad = size / 4;
        canvas.DrawRect(0, 0, textWidth + (2 * pad), size + (2 * pad), background);
        canvas.DrawText(text, pad, pad + (size * 0.85f), font, foreground);
        canvas.Flush();
    }

    private static void EnsureFolder(string file)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(file));
        if (!string.IsNullOrEmpty(folder))
            Directory.CreateDirectory(folder);
    }
}
