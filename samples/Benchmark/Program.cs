// Benchmark: trains and evaluates CFA, DFM (FRE and NLL scores) and CFlow on MVTec AD categories at anomalib's
// published settings (256×256, ImageNet ResNet-18, CFA 30 epochs, CFlow 50 epochs) and writes benchmark.json,
// benchmark.md and benchmark.html with anomalib's published figures beside the measured ones.
//
//   dotnet run -c Release --project samples/Benchmark -- --data <MVTec root> [--categories bottle,...]
//       [--algorithms cfa,dfm,cflow] [--backbone <model.onnx>] [--image-size 256] [--cfa-epochs 30] [--cflow-epochs 50] [--out <folder>]
//
// anomalib stops CFlow early on metrics computed on the test set; this benchmark trains the fixed epochs instead.
using System.Globalization;
using AnomalyVision.Samples;
using AnomalyVision.Samples.Benchmark;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Spectre.Console;

var settings = BenchmarkSettings.Parse(args, out int usageExitCode);
if (settings is null)
    return usageExitCode;
Directory.CreateDirectory(settings.OutputFolder);
var mlContext = new MLContext(seed: 0);
var results = new List<BenchmarkResult>();
var report = new BenchmarkReport(settings);

foreach (string category in settings.Categories)
{
    IDataView train = mlContext.Data.LoadMvtecAd(settings.DataRoot, category, MvtecSplit.Train);
    IDataView test = mlContext.Data.LoadMvtecAd(settings.DataRoot, category, MvtecSplit.Test);
    foreach (string algorithm in settings.Runs)
    {
        AnsiConsole.Write(new Rule($"[bold]{Markup.Escape(category)} · {algorithm}[/]").LeftJustified());
        var (model, fitSeconds) = DetectorRuns.FitWithProgress(CreateEstimator(algorithm), train);
        var scored = DetectorRuns.ScoreAndEvaluate(mlContext, model, test);
        (model as IDisposable)?.Dispose();
        var result = new BenchmarkResult(category, algorithm, scored.Metrics, fitSeconds, scored.ImagesPerSecond, PeakWorkingSet(),
            PublishedFigures.Find(category, algorithm));
        results.Add(result);
        AnsiConsole.MarkupLine(Markup.Escape(result.Summary()));
        report.Write(results);   // after every run, so that finished runs survive an interrupted benchmark
    }
}
AnsiConsole.MarkupLine($"Written: [blue]{Markup.Escape(report.JsonPath)}[/], [blue]{Markup.Escape(report.MarkdownPath)}[/], [blue]{Markup.Escape(report.HtmlPath)}[/]");
Console.Write(File.ReadAllText(report.MarkdownPath));
return 0;

IEstimator<ITransformer> CreateEstimator(string algorithm)
{
    T Common<T>(T options) where T : BackboneDetectorOptions
    {
        options.BackbonePath = settings.BackbonePath;
        options.InputColumnName = "ImagePath";
        options.ImageHeight = options.ImageWidth = settings.ImageSize;
        options.Progress = FitProgress.Instance;
        return options;
    }
    return algorithm switch
    {
        "cfa" => mlContext.Transforms.DetectCfaAnomalies(Common(new CfaOptions { Epochs = settings.CfaEpochs })),
        "dfm-fre" => mlContext.Transforms.DetectDfmAnomalies(Common(new DfmOptions { ScoreType = DfmScoreType.Fre })),
        "dfm-nll" => mlContext.Transforms.DetectDfmAnomalies(Common(new DfmOptions { ScoreType = DfmScoreType.Nll })),
        "cflow" => mlContext.Transforms.DetectCflowAnomalies(Common(new CflowOptions { Epochs = settings.CflowEpochs })),
        _ => throw new ArgumentException($"Unknown algorithm '{algorithm}'."),
    };
}

// The process's peak working set so far (read on this thread: no sampling thread runs beside TorchSharp, see DetectorRuns).
static long PeakWorkingSet()
{
    using var process = System.Diagnostics.Process.GetCurrentProcess();
    return process.PeakWorkingSet64;
}
