using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Anomaly.Vision;

namespace AnomalyVision.Samples.Benchmark;

/// <summary>Command-line settings; the defaults are anomalib's published settings.</summary>
internal sealed record BenchmarkSettings(string DataRoot, IReadOnlyList<string> Categories, IReadOnlyList<string> Runs, string? BackbonePath,
    string OutputFolder, int ImageSize, int CfaEpochs, int CflowEpochs)
{
    private const string Usage =
        "usage: Benchmark --data <MVTec root> [--categories bottle,...] [--algorithms cfa,dfm,cflow] [--backbone <model.onnx>]\n" +
        "                 [--image-size 256] [--cfa-epochs 30] [--cflow-epochs 50] [--out <folder>]";

    public static BenchmarkSettings? Parse(string[] args)
    {
        var values = new Dictionary<string, string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
                return Fail(args[i] is "--help" or "-h" ? "" : $"unexpected argument '{args[i]}'");
            values[args[i][2..]] = args[++i];
        }
        string[] known = ["data", "categories", "algorithms", "backbone", "image-size", "cfa-epochs", "cflow-epochs", "out"];
        if (values.Keys.FirstOrDefault(k => !known.Contains(k)) is string unknown)
            return Fail($"unknown option --{unknown}");
        if (!values.TryGetValue("data", out string? root) || !Directory.Exists(root))
            return Fail("--data must name an MVTec AD root folder (one folder per category)");
        string[] categories = values.TryGetValue("categories", out string? list)
            ? Split(list)
            : Directory.GetDirectories(root).Where(d => Directory.Exists(Path.Combine(d, "train", "good"))).Select(d => Path.GetFileName(d)!).Order(StringComparer.Ordinal).ToArray();
        if (categories.Length == 0)
            return Fail($"no category folders with train/good under {root}");
        string[] algorithms = Split(values.GetValueOrDefault("algorithms") ?? "cfa,dfm,cflow");
        if (algorithms.Length == 0 || algorithms.Any(a => a is not ("cfa" or "dfm" or "cflow")))
            return Fail("--algorithms takes a comma-separated list of cfa, dfm, cflow");
        // DFM runs with both of its scores.
        string[] runs = algorithms.SelectMany(a => a == "dfm" ? new[] { "dfm-fre", "dfm-nll" } : [a]).ToArray();
        return new BenchmarkSettings(root, categories, runs, values.GetValueOrDefault("backbone"),
            values.GetValueOrDefault("out") ?? Path.Combine("artifacts", "benchmark"),
            Int(values, "image-size", 256), Int(values, "cfa-epochs", 30), Int(values, "cflow-epochs", 50));
    }

    /// <summary>A one-line description for the reports.</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{ImageSize}×{ImageSize} px, backbone {(BackbonePath is null ? "ImageNet ResNet-18 (Microsoft.ML.DnnImageFeaturizer.ResNet18)" : Path.GetFileName(BackbonePath))}, " +
        $"CFA {CfaEpochs} epochs, CFlow {CflowEpochs} epochs (fixed; no early stopping on test metrics), DFM FRE and NLL scores");

    private static string[] Split(string list) => list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static int Int(Dictionary<string, string> values, string key, int fallback) =>
        values.TryGetValue(key, out string? text) ? int.Parse(text, CultureInfo.InvariantCulture) : fallback;

    private static BenchmarkSettings? Fail(string message)
    {
        Console.Error.WriteLine(message.Length > 0 ? $"{message}\n{Usage}" : Usage);
        return null;
    }
}

/// <summary>What one run (category, algorithm) measured.</summary>
internal sealed record BenchmarkResult(string Category, string Algorithm, ImageAnomalyMetrics Metrics, double FitSeconds,
    double ImagesPerSecond, long PeakMemoryBytes, PublishedFigure? Published)
{
    public string Summary() => string.Create(CultureInfo.InvariantCulture,
        $"{Category} {Algorithm}: image AUROC {Metrics.ImageAuroc:F3}, pixel AUROC {F(Metrics.PixelAuroc)}, AUPRO {F(Metrics.Aupro)}, " +
        $"image F1 {Metrics.ImageF1Max:F3}; fit {FitSeconds:F1} s, {ImagesPerSecond:F1} images/s, peak {PeakMemoryBytes / 1048576.0:F0} MiB");

    public static string F(double? value) => value is double v ? v.ToString("F3", CultureInfo.InvariantCulture) : "–";
}

/// <summary>Writes benchmark.json, benchmark.md and benchmark.html, each atomically (a temporary file renamed over the old one).</summary>
internal sealed class BenchmarkReport(BenchmarkSettings settings)
{
    public string JsonPath { get; } = Path.Combine(settings.OutputFolder, "benchmark.json");

    public string MarkdownPath { get; } = Path.Combine(settings.OutputFolder, "benchmark.md");

    public string HtmlPath { get; } = Path.Combine(settings.OutputFolder, "benchmark.html");

    public void Write(IReadOnlyList<BenchmarkResult> results)
    {
        WriteAtomically(JsonPath, Json(results));
        WriteAtomically(MarkdownPath, Markdown(results));
        WriteAtomically(HtmlPath, Html(results));
    }

    private string Json(IReadOnlyList<BenchmarkResult> results) => JsonSerializer.Serialize(new
    {
        settings = settings.Describe(),
        image_size = settings.ImageSize,
        cfa_epochs = settings.CfaEpochs,
        cflow_epochs = settings.CflowEpochs,
        results = results.Select(r => new
        {
            category = r.Category,
            algorithm = r.Algorithm,
            image_auroc = r.Metrics.ImageAuroc,
            pixel_auroc = r.Metrics.PixelAuroc,
            aupro = r.Metrics.Aupro,
            image_f1 = r.Metrics.ImageF1Max,
            fit_seconds = r.FitSeconds,
            images_per_second = r.ImagesPerSecond,
            peak_memory_bytes = r.PeakMemoryBytes,
            published = r.Published is { } p ? new { backbone = p.Backbone, image_auroc = p.ImageAuroc, pixel_auroc = p.PixelAuroc, aupro = p.Aupro, image_f1 = p.ImageF1 } : null,
        }),
    }, new JsonSerializerOptions { WriteIndented = true });

    /// <summary>The four metrics of a result: measured, published and measured − published.</summary>
    private static IEnumerable<(string Name, double? Measured, double? Published)> Metrics(BenchmarkResult r) =>
    [
        ("image AUROC", r.Metrics.ImageAuroc, r.Published?.ImageAuroc),
        ("pixel AUROC", r.Metrics.PixelAuroc, r.Published?.PixelAuroc),
        ("AUPRO", r.Metrics.Aupro, r.Published?.Aupro),
        ("image F1", r.Metrics.ImageF1Max, r.Published?.ImageF1),
    ];

    private static string Cell(double? measured, double? published) =>
        published is double p && measured is double m
            ? string.Create(CultureInfo.InvariantCulture, $"{m:F3} ({p:F3}, {m - p:+0.000;-0.000;0.000})")
            : BenchmarkResult.F(measured);

    private static string Numbers(BenchmarkResult r) => string.Create(CultureInfo.InvariantCulture,
        $"{r.FitSeconds:F1} | {r.ImagesPerSecond:F1} | {r.PeakMemoryBytes / 1048576.0:F0}");

    private string Markdown(IReadOnlyList<BenchmarkResult> results)
    {
        var text = new StringBuilder();
        text.Append("Settings: ").Append(settings.Describe()).Append(".\n");
        text.Append("Each metric: measured (anomalib's published figure, difference) where one is published.\n\n");
        text.Append("| category | algorithm | image AUROC | pixel AUROC | AUPRO | image F1 | published backbone | fit s | images/s | peak MiB |\n");
        text.Append("|---|---|---|---|---|---|---|---|---|---|\n");
        foreach (var r in results)
        {
            text.Append("| ").Append(r.Category).Append(" | ").Append(r.Algorithm).Append(" | ");
            text.Append(string.Join(" | ", Metrics(r).Select(m => Cell(m.Measured, m.Published))));
            text.Append(" | ").Append(r.Published?.Backbone ?? "–").Append(" | ").Append(Numbers(r)).Append(" |\n");
        }
        return text.ToString();
    }

    private string Html(IReadOnlyList<BenchmarkResult> results)
    {
        static string E(string s) => WebUtility.HtmlEncode(s);
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Anomaly.Vision benchmark</title>\n")
            .Append("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}th,td{border:1px solid #999;padding:4px 10px;text-align:right}")
            .Append("td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}.p{color:#666;font-size:85%}.up{color:#070}.down{color:#b00}</style>\n</head>\n<body>\n")
            .Append("<h1>Anomaly.Vision on MVTec AD</h1>\n<p>").Append(E(settings.Describe())).Append(". Grey: anomalib's published figure and the difference.</p>\n")
            .Append("<table>\n<tr><th>Category</th><th>Algorithm</th><th>Image AUROC</th><th>Pixel AUROC</th><th>AUPRO</th><th>Image F1</th>")
            .Append("<th>Published backbone</th><th>Fit s</th><th>Images/s</th><th>Peak MiB</th></tr>\n");
        foreach (var r in results)
        {
            html.Append("<tr><td>").Append(E(r.Category)).Append("</td><td>").Append(E(r.Algorithm)).Append("</td>");
            foreach (var (_, measured, published) in Metrics(r))
            {
                html.Append("<td>").Append(BenchmarkResult.F(measured));
                if (published is double p && measured is double m)
                    html.Append(string.Create(CultureInfo.InvariantCulture,
                        $"<br><span class=\"p\">{p:F3} <span class=\"{(m >= p ? "up" : "down")}\">{m - p:+0.000;-0.000;0.000}</span></span>"));
                html.Append("</td>");
            }
            html.Append("<td>").Append(E(r.Published?.Backbone ?? "–")).Append("</td><td>")
                .Append(string.Join("</td><td>", Numbers(r).Split(" | "))).Append("</td></tr>\n");
        }
        html.Append("</table>\n</body>\n</html>\n");
        return html.ToString();
    }

    private static void WriteAtomically(string path, string contents) => AtomicFile.WriteAllText(path, contents);
}
