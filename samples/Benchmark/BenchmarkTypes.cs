using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using AnomalyVision.Samples;
using Microsoft.ML.Anomaly.Vision;

namespace AnomalyVision.Samples.Benchmark;

/// <summary>Command-line settings; the defaults are anomalib's published settings.</summary>
internal sealed record BenchmarkSettings(string DataRoot, IReadOnlyList<string> Categories, IReadOnlyList<string> Runs, string? BackbonePath,
    string OutputFolder, int ImageSize, int CfaEpochs, int CflowEpochs)
{
    /// <summary>Parses the command line; <see langword="null"/> after --help or a usage error, with the exit code to return.</summary>
    public static BenchmarkSettings? Parse(string[] args, out int exitCode)
    {
        var data = new Option<string>("--data") { Description = "The MVTec AD root folder (one folder per category).", Required = true };
        data.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is string root && !Directory.Exists(root))
                r.AddError($"--data must name an MVTec AD root folder (one folder per category); '{root}' does not exist.");
        });
        var categories = new Option<string?>("--categories") { Description = "Comma-separated categories. Default: every folder under --data with train/good." };
        var algorithms = new Option<string>("--algorithms") { Description = "Which detectors, comma-separated (DFM runs with its FRE and NLL scores).", DefaultValueFactory = _ => "cfa,dfm,cflow" }
            .ListOf("cfa", "dfm", "cflow");
        var backbone = new Option<string?>("--backbone") { Description = "Your backbone (model.onnx). Default: the ImageNet ResNet-18." };
        var imageSize = new Option<int>("--image-size") { Description = "Input size of the detectors in pixels.", DefaultValueFactory = _ => 256 }.AtLeast(32);
        var cfaEpochs = new Option<int>("--cfa-epochs") { Description = "CFA's training epochs.", DefaultValueFactory = _ => 30 }.AtLeast(1);
        var cflowEpochs = new Option<int>("--cflow-epochs") { Description = "CFlow's training epochs.", DefaultValueFactory = _ => 50 }.AtLeast(1);
        var output = new Option<string>("--out") { Description = "The output folder.", DefaultValueFactory = _ => Path.Combine("artifacts", "benchmark") };
        var command = new RootCommand("Trains and evaluates CFA, DFM and CFlow on MVTec AD categories at anomalib's published settings.")
        {
            data, categories, algorithms, backbone, imageSize, cfaEpochs, cflowEpochs, output,
        };
        if (CommandLineParsing.Parse(command, args, out exitCode) is not { } parsed)
            return null;
        string root = parsed.GetValue(data)!;
        string[] categoryNames = parsed.GetValue(categories) is string list
            ? CommandLineParsing.SplitList(list)
            : Directory.GetDirectories(root).Where(d => Directory.Exists(Path.Combine(d, "train", "good"))).Select(d => Path.GetFileName(d)!).Order(StringComparer.Ordinal).ToArray();
        if (categoryNames.Length == 0)
        {
            Console.Error.WriteLine($"no category folders with train/good under {root}");
            exitCode = CommandLineParsing.UsageErrorExitCode;
            return null;
        }
        // DFM runs with both of its scores.
        string[] runs = CommandLineParsing.SplitList(parsed.GetValue(algorithms)!).SelectMany(a => a == "dfm" ? new[] { "dfm-fre", "dfm-nll" } : [a]).ToArray();
        return new BenchmarkSettings(root, categoryNames, runs, parsed.GetValue(backbone), parsed.GetValue(output)!,
            parsed.GetValue(imageSize), parsed.GetValue(cfaEpochs), parsed.GetValue(cflowEpochs));
    }

    /// <summary>A one-line description for the reports.</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{ImageSize}×{ImageSize} px, backbone {(BackbonePath is null ? "ImageNet ResNet-18 (Microsoft.ML.DnnImageFeaturizer.ResNet18)" : Path.GetFileName(BackbonePath))}, " +
        $"CFA {CfaEpochs} epochs, CFlow {CflowEpochs} epochs (fixed; no early stopping on test metrics), DFM FRE and NLL scores");
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
