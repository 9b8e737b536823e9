// Sweep: try DFM, CFA and CFlow with several settings, validated on synthetic defects pasted onto held-out good
// training images (no defective image is used to choose), and keep the best. With no arguments it runs on the
// generated synthetic washer set at 96 pixels; on MVTec AD:
//
//   dotnet run -c Release --project samples/Sweep -- --data <MVTec root> --category bottle --test-report
//
// --test-report also scores every trial on the real test split (after the choice) and prints how well the synthetic
// validation metric ranked the trials: the chosen, best and median trial on the test set and the Spearman correlation.
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using AnomalyVision.Samples;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;

var settings = SweepSettings.Parse(args, out int usageExitCode);
if (settings is null)
    return usageExitCode;

var ml = new MLContext(seed: settings.Seed);
string dataRoot = settings.DataRoot ?? Path.Combine(settings.OutputFolder, "data");
if (settings.DataRoot is null)
{
    Console.WriteLine($"Generating the synthetic defect set in {dataRoot} ...");
    SyntheticDefectSet.Generate(dataRoot, new SyntheticDefectSetOptions { Categories = [settings.Category], Overwrite = true });
}
IDataView train = ml.Data.LoadMvtecAd(dataRoot, settings.Category, MvtecSplit.Train);

var options = new ImageDetectorSweepOptions
{
    BackbonePath = settings.BackbonePath,     // null: the ImageNet ResNet-18
    InputColumnName = nameof(MvtecImage.ImagePath),
    ImageSize = settings.ImageSize,
    Strategy = SweepStrategy.Random,
    MaxTrials = settings.Trials,
    TimeBudget = settings.Budget,
    Metric = SweepMetric.ImageAuroc,
    OutputFolder = settings.OutputFolder,
    KeepAllModels = settings.TestReport,
    BatchSize = 16,
    // DFM is cheap (one PCA per trial), so the space is DFM-heavy: three of the five spaces are DFM's; CFA and CFlow get few epochs.
    SearchSpace =
    [
        new DfmSearchSpace
        {
            Layer = SearchParameter.Choice("layer2", "layer3"), PoolingKernelSize = SearchParameter.Choice(1, 2, 4),
            VarianceShare = SearchParameter.Range(0.9f, 0.995f), ScoreType = SearchParameter.Choice(DfmScoreType.Fre, DfmScoreType.Nll),
        },
        new DfmSearchSpace { Layer = "layer3", PoolingKernelSize = SearchParameter.Choice(1, 2), VarianceShare = SearchParameter.Range(0.95f, 0.999f) },
        new DfmSearchSpace { Layer = "layer2", PoolingKernelSize = SearchParameter.Choice(2, 4), VarianceShare = SearchParameter.Range(0.95f, 0.999f) },
        new CfaSearchSpace { GammaD = SearchParameter.Choice(2, 4), NumNearestNeighbors = SearchParameter.Choice(3, 5), Epochs = 1 },
        new CflowSearchSpace
        {
            Layers = new[] { "layer3" }, CouplingBlocks = SearchParameter.Choice(2, 4), ConditionVectorSize = 64, Epochs = 1,
            Configure = o => o.FiberBatchSize = 512,
        },
    ],
    Progress = new ConsoleProgress(),
};

var clock = Stopwatch.StartNew();
using SweepResult sweep = ml.AnomalyDetection.SweepImageDetectors(options).Fit(train);
Console.WriteLine();
Console.WriteLine(sweep.ToLeaderboardString());
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"Sweep wall time {sweep.WallSeconds:F1} s; fitting and validating each trial on its own: {sweep.SummedStandaloneSeconds:F1} s " +
    $"(fits alone {sweep.SummedStandaloneFitSeconds:F1} s, each counting the training-feature extraction); " +
    $"{sweep.BackboneImagesProcessed} images went through the backbone in {sweep.FeatureExtractions.Count} extraction(s)."));
Console.WriteLine($"Outputs: {Path.Combine(settings.OutputFolder, "sweep.html")}, sweep.json, best-model.zip");

if (settings.TestReport)
{
    // After the choice: every trial on the real test split, to see how well synthetic validation ranked them.
    IDataView test = ml.Data.LoadMvtecAd(dataRoot, settings.Category, MvtecSplit.Test);
    var rows = new List<(SweepTrialResult Trial, ImageAnomalyMetrics Test)>();
    foreach (SweepTrialResult trial in sweep.Trials.Where(t => t.Model is not null))
    {
        ImageAnomalyMetrics metrics = ml.AnomalyDetection.EvaluateImageAnomalies(trial.Model!.Transform(test),
            anomalyMapColumnName: trial.Model.ProducesMap ? "AnomalyMap" : null);
        rows.Add((trial, metrics));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"trial {trial.Number,2}: validation {trial.MetricValue:F4}  test image AUROC {metrics.ImageAuroc:F4} pixel AUROC {F(metrics.PixelAuroc)} AUPRO {F(metrics.Aupro)}  {trial.Description}"));
    }
    var chosen = rows.Single(r => r.Trial == sweep.BestTrial);
    var best = rows.MaxBy(r => r.Test.ImageAuroc);
    var ordered = rows.OrderBy(r => r.Test.ImageAuroc).ToList();
    var median = ordered[(ordered.Count - 1) / 2];
    double rho = Spearman(rows.Select(r => r.Trial.MetricValue!.Value).ToArray(), rows.Select(r => r.Test.ImageAuroc).ToArray());
    Console.WriteLine();
    Console.WriteLine($"Real test set ({settings.Category}), image AUROC / pixel AUROC / AUPRO:");
    Console.WriteLine($"  chosen (trial {chosen.Trial.Number}): {Summary(chosen.Test)}  {chosen.Trial.Description}");
    Console.WriteLine($"  best   (trial {best.Trial.Number}): {Summary(best.Test)}  {best.Trial.Description}");
    Console.WriteLine($"  median (trial {median.Trial.Number}): {Summary(median.Test)}  {median.Trial.Description}");
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"  Spearman correlation, synthetic validation image AUROC vs real test image AUROC over {rows.Count} trials: {rho:F3}"));
}
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Total {clock.Elapsed.TotalSeconds:F1} s"));
return 0;

static string F(double? v) => v is double d ? d.ToString("F4", CultureInfo.InvariantCulture) : "n/a";

static string Summary(ImageAnomalyMetrics m) => $"{F(m.ImageAuroc)} / {F(m.PixelAuroc)} / {F(m.Aupro)}";

// Spearman's rank correlation: Pearson's correlation of the ranks, ties taking their mean rank.
static double Spearman(double[] a, double[] b)
{
    double[] ra = Ranks(a), rb = Ranks(b);
    double ma = ra.Average(), mb = rb.Average();
    double cov = 0, va = 0, vb = 0;
    for (int i = 0; i < ra.Length; i++)
    {
        cov += (ra[i] - ma) * (rb[i] - mb);
        va += (ra[i] - ma) * (ra[i] - ma);
        vb += (rb[i] - mb) * (rb[i] - mb);
    }
    return va == 0 || vb == 0 ? double.NaN : cov / Math.Sqrt(va * vb);

    static double[] Ranks(double[] values)
    {
        int[] order = Enumerable.Range(0, values.Length).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Length];
        for (int start = 0; start < order.Length;)
        {
            int end = start;
            while (end + 1 < order.Length && values[order[end + 1]] == values[order[start]])
                end++;
            for (int k = start; k <= end; k++)
                ranks[order[k]] = (start + end) / 2.0;
            start = end + 1;
        }
        return ranks;
    }
}

internal sealed class ConsoleProgress : IProgress<SweepProgress>
{
    public void Report(SweepProgress value)
    {
        if (value.Stage is "features" or "trial" or "result")
            Console.WriteLine(value.Trial == 0 ? value.Message : $"[{value.Trial}/{value.Trials}] {value.Stage}: {value.Message}");
    }
}

internal sealed record SweepSettings(string? DataRoot, string Category, string? BackbonePath, string OutputFolder, int ImageSize,
    int Trials, TimeSpan? Budget, int Seed, bool TestReport)
{
    /// <summary>Parses the command line; <see langword="null"/> after --help or a usage error, with the exit code to return.</summary>
    public static SweepSettings? Parse(string[] args, out int exitCode)
    {
        var data = new Option<string?>("--data") { Description = "An MVTec AD root folder. Default: a generated synthetic set." };
        var category = new Option<string>("--category") { Description = "The category folder.", DefaultValueFactory = _ => SyntheticDefectSet.Washer };
        var backbone = new Option<string?>("--backbone") { Description = "Your backbone (model.onnx). Default: the ImageNet ResNet-18." };
        var output = new Option<string>("--out") { Description = "The output folder.", DefaultValueFactory = _ => Path.Combine("artifacts", "sweep") };
        var imageSize = new Option<int>("--image-size") { Description = "Input size of the detectors in pixels.", DefaultValueFactory = _ => 96 }.AtLeast(32);
        var trials = new Option<int>("--trials") { Description = "How many trials at most.", DefaultValueFactory = _ => 12 }.AtLeast(1);
        var budget = new Option<double?>("--budget-minutes") { Description = "A time budget for the sweep. Default: none." }.AtLeast(0.0);
        var seed = new Option<int>("--seed") { Description = "The seed of the MLContext and the sweep.", DefaultValueFactory = _ => 0 };
        var testReport = new Option<bool>("--test-report") { Description = "Also score every trial on the real test split and report how well validation ranked them." };
        var command = new RootCommand("Sweeps DFM, CFA and CFlow settings, validated on synthetic defects, and keeps the best.")
        {
            data, category, backbone, output, imageSize, trials, budget, seed, testReport,
        };
        if (CommandLineParsing.Parse(command, args, out exitCode) is not { } parsed)
            return null;
        var settings = new SweepSettings(parsed.GetValue(data), parsed.GetValue(category)!, parsed.GetValue(backbone), parsed.GetValue(output)!,
            parsed.GetValue(imageSize), parsed.GetValue(trials), parsed.GetValue(budget) is double minutes ? TimeSpan.FromMinutes(minutes) : null,
            parsed.GetValue(seed), parsed.GetValue(testReport));
        if (settings.DataRoot is not null && parsed.GetResult(category) is null)
            Console.Error.WriteLine($"--data given without --category: using '{SyntheticDefectSet.Washer}'.");
        return settings;
    }
}
