// Quickstart: train CFA, DFM and CFlow on good parts, score a test set, evaluate, save, reload, and
// write pictures and a report. With no arguments it runs on a generated synthetic defect set and the
// ImageNet ResNet-18 of the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18, so it needs no download:
//
//   dotnet run -c Release --project samples/Quickstart
//   dotnet run -c Release --project samples/Quickstart -- --untrained        (random backbone weights, for comparison)
//   dotnet run -c Release --project samples/Quickstart -- --data <MVTec root> --category bottle --backbone resnet18.pth
using System.Globalization;
using System.Text.Json;
using AnomalyVision.Samples;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Anomaly.Vision.Reporting;
using Microsoft.ML.Data;
using Quickstart;
using Spectre.Console;

var settings = QuickstartSettings.Parse(args, out int usageExitCode);
if (settings is null)
    return usageExitCode;

Directory.CreateDirectory(settings.OutputFolder);
var mlContext = new MLContext(seed: 0);

// 1. Data: an MVTec AD category, or a generated synthetic set in the same layout.
string dataRoot = settings.DataRoot ?? Path.Combine(settings.OutputFolder, "data");
string category = settings.Category;
if (settings.DataRoot is null)
{
    AnsiConsole.MarkupLine($"Generating the synthetic defect set in [blue]{Markup.Escape(dataRoot)}[/] ...");
    SyntheticDefectSet.Generate(dataRoot, new SyntheticDefectSetOptions { Categories = [category], Overwrite = true });
}
IDataView train = mlContext.Data.LoadMvtecAd(dataRoot, category, MvtecSplit.Train);
IDataView test = mlContext.Data.LoadMvtecAd(dataRoot, category, MvtecSplit.Test);

// 2. Backbone: the ImageNet ResNet-18 (the detectors' default), the user's ONNX file or torchvision checkpoint,
//    or with --untrained a ResNet-18 with random weights written here.
BackboneModel? backbone = null;
string? backbonePath = settings.BackbonePath;
if (settings.Untrained)
{
    backbonePath = Path.Combine(settings.OutputFolder, "resnet18-untrained.onnx");
    AtomicFile.WriteAllBytes(backbonePath, ResNetBackbones.CreateUntrainedResNet18(seed: 0));
    AnsiConsole.MarkupLine("[yellow]--untrained: using a ResNet-18 with UNTRAINED random weights.[/] " +
                           "Scores are far better with the default ImageNet backbone.");
}
else if (backbonePath is not null && Path.GetExtension(backbonePath).ToLowerInvariant() is ".pth" or ".pt" or ".safetensors")
{
    backbone = ResNetBackbones.FromTorchvisionCheckpoint(backbonePath);
    backbonePath = null;
}

var results = new List<AlgorithmResult>();
foreach (string algorithm in settings.Algorithms)
{
    AnsiConsole.Write(new Rule($"[bold]{algorithm.ToUpperInvariant()}[/]").LeftJustified());
    results.Add(Run(algorithm));
}

// 5. Pictures, report and metrics.json.
string rocPng = Path.Combine(settings.OutputFolder, "roc.png");
AnomalyReport.WriteRocCurve(results.ToDictionary(r => r.Name, r => (r.Scores, r.Labels)), rocPng);
string reportHtml = Path.Combine(settings.OutputFolder, "report.html");
AnomalyReport.WriteHtml(reportHtml, results.ToDictionary(r => r.Name, r => r.Metrics), rocPng,
    results.SelectMany(r => r.Overlays).ToList(), $"Anomaly.Vision quickstart: {category}");
string metricsJson = Path.Combine(settings.OutputFolder, "metrics.json");
AtomicFile.WriteAllText(metricsJson, JsonSerializer.Serialize(
    results.ToDictionary(r => r.Name, r => r.ToJson()), new JsonSerializerOptions { WriteIndented = true }));

AnsiConsole.MarkupLine($"Backbone: [bold]{Markup.Escape(results[0].Backbone.ToString())}[/]");
var table = new Table().AddColumns("model", "img AUROC", "px AUROC", "AUPRO", "img F1", "fit s", "img/s", "reload Δ");
foreach (var r in results)
    table.AddRow(r.Name, F(r.Metrics.ImageAuroc), F(r.Metrics.PixelAuroc), F(r.Metrics.Aupro), F(r.Metrics.ImageF1Max),
        F(r.FitSeconds, "F1"), F(r.ImagesPerSecond, "F1"), r.ReloadMaxAbsDiff.ToString("G3", CultureInfo.InvariantCulture));
AnsiConsole.Write(table);
AnsiConsole.MarkupLine($"Report: [blue]{Markup.Escape(reportHtml)}[/]  metrics: [blue]{Markup.Escape(metricsJson)}[/]");

bool reloadOk = results.All(r => r.ReloadMaxAbsDiff <= 1e-5);
if (!reloadOk)
    AnsiConsole.MarkupLine("[red]A reloaded model scored differently from the trained one.[/]");
return reloadOk ? 0 : 1;

AlgorithmResult Run(string algorithm)
{
    // 3. Fit on good images, with a progress bar over feature extraction and training epochs.
    IEstimator<ITransformer> estimator = CreateEstimator(algorithm, out string note);
    if (note.Length > 0)
        AnsiConsole.MarkupLine($"[grey]{Markup.Escape(note)}[/]");
    var (model, fitSeconds) = DetectorRuns.FitWithProgress(estimator, train);
    BackboneDescription backboneDescription = ((BackboneAnomalyTransformerBase)model).BackboneDescription;

    // 4. Score the test set once (cached), evaluate, save, reload in a new MLContext and compare.
    var (scored, metrics, imagesPerSecond) = DetectorRuns.ScoreAndEvaluate(mlContext, model, test);
    var rows = mlContext.Data.CreateEnumerable<ScoredImage>(scored, reuseRowObject: false).ToList();

    string zip = Path.Combine(settings.OutputFolder, $"{algorithm}.zip");
    // The F1-optimal threshold on these test images, beside the model: the inspection service's verdicts use it.
    float threshold = AdaptiveThreshold.Compute(rows.Select(r => r.Score).ToArray(), rows.Select(r => r.Label).ToArray());
    AtomicFile.WriteAllText(Path.ChangeExtension(zip, ".threshold.json"), JsonSerializer.Serialize(new { threshold }));
    mlContext.Model.SaveAtomically(model, train.Schema, zip);   // a failed save leaves the previous zip intact
    var freshContext = new MLContext();
    ITransformer reloaded = freshContext.Model.Load(zip, out _);
    var reloadedScores = freshContext.Data.CreateEnumerable<ScoredImage>(reloaded.Transform(test), reuseRowObject: false).Select(r => r.Score).ToList();
    double reloadDiff = rows.Zip(reloadedScores, (a, b) => (double)Math.Abs(a.Score - b)).Max();
    (model as IDisposable)?.Dispose();
    (reloaded as IDisposable)?.Dispose();

    var overlays = WriteOverlays(algorithm, rows);
    AnsiConsole.MarkupLine($"{algorithm}: fitted in {fitSeconds:F1} s, scored {imagesPerSecond:F1} images/s, saved to {Markup.Escape(zip)}");
    return new AlgorithmResult(algorithm, backboneDescription, metrics, fitSeconds, imagesPerSecond, reloadDiff,
        rows.Select(r => r.Score).ToArray(), rows.Select(r => r.Label).ToArray(), overlays);
}

IEstimator<ITransformer> CreateEstimator(string algorithm, out string note)
{
    int size = settings.ImageSize;
    note = "";
    switch (algorithm)
    {
        case "cfa":
            var cfa = new CfaOptions { Backbone = backbone, BackbonePath = backbonePath, InputColumnName = "ImagePath", ImageHeight = size, ImageWidth = size, Progress = FitProgress.Instance };
            if (settings.Epochs is int cfaEpochs)
                cfa.Epochs = cfaEpochs;
            return mlContext.Transforms.DetectCfaAnomalies(cfa);
        case "dfm":
            return mlContext.Transforms.DetectDfmAnomalies(new DfmOptions
            { Backbone = backbone, BackbonePath = backbonePath, InputColumnName = "ImagePath", ImageHeight = size, ImageWidth = size, Progress = FitProgress.Instance });
        case "cflow":
            var cflow = new CflowOptions { Backbone = backbone, BackbonePath = backbonePath, InputColumnName = "ImagePath", ImageHeight = size, ImageWidth = size, Progress = FitProgress.Instance };
            cflow.Epochs = settings.Epochs ?? QuickstartSettings.CflowQuickEpochs;
            if (settings.Epochs is null)
                note = $"CFlow trains {cflow.Epochs} epochs here instead of its default 50, to keep the quickstart short (--epochs changes it).";
            return mlContext.Transforms.DetectCflowAnomalies(cflow);
        default:
            throw new ArgumentException($"Unknown algorithm '{algorithm}'.");
    }
}

List<(string Algorithm, string OverlayPng, string Caption)> WriteOverlays(string algorithm, List<ScoredImage> rows)
{
    string folder = Path.Combine(settings.OutputFolder, "overlays", algorithm);
    Directory.CreateDirectory(folder);
    int size = settings.ImageSize;
    // The first two images of every defect type and of the good ones, in one colour range so that maps compare.
    var picked = rows.GroupBy(r => r.DefectType).SelectMany(g => g.Take(2)).ToList();
    float min = picked.Min(r => r.AnomalyMap.Min()), max = picked.Max(r => r.AnomalyMap.Max());
    var overlays = new List<(string, string, string)>();
    foreach (var row in picked)
    {
        string name = $"{row.DefectType}_{Path.GetFileNameWithoutExtension(row.ImagePath)}.png";
        string png = Path.Combine(folder, name);
        AnomalyReport.WriteOverlay(row.ImagePath, row.AnomalyMap, size, size, row.Score,
            string.IsNullOrEmpty(row.MaskPath) ? null : row.MaskPath, min, max > min ? max : min + 1, png);
        overlays.Add((algorithm, png, $"{row.DefectType} · score {row.Score:G4}"));
    }
    return overlays;
}

static string F(double? value, string format = "F3") => value is double v ? v.ToString(format, CultureInfo.InvariantCulture) : "–";
