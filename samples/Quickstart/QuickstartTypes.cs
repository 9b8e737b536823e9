using System.CommandLine;
using AnomalyVision.Samples;
using Microsoft.ML.Anomaly.Vision;

namespace Quickstart;

/// <summary>Command-line settings of the quickstart.</summary>
internal sealed record QuickstartSettings(string? DataRoot, string Category, string? BackbonePath, bool Untrained, string OutputFolder,
    int ImageSize, int? Epochs, IReadOnlyList<string> Algorithms)
{
    /// <summary>CFlow epochs when --epochs is not given (its default, 50, takes too long for a quickstart on a CPU).</summary>
    public const int CflowQuickEpochs = 3;

    /// <summary>Input size of the detectors here: 128 pixels keeps CFA's 30 training epochs within the quickstart's budget on a CPU.</summary>
    private const int DefaultImageSize = 128;

    /// <summary>Parses the command line; <see langword="null"/> after --help or a usage error, with the exit code to return.</summary>
    public static QuickstartSettings? Parse(string[] args, out int exitCode)
    {
        var data = new Option<string?>("--data") { Description = "An MVTec AD root folder (needs --category). Default: a generated synthetic set." };
        var category = new Option<string?>("--category") { Description = $"The category folder under --data. Default: {SyntheticDefectSet.Washer} (synthetic)." };
        var backbone = new Option<string?>("--backbone") { Description = "Your backbone: model.onnx, checkpoint.pth or checkpoint.safetensors. Default: the ImageNet ResNet-18." };
        var untrained = new Option<bool>("--untrained") { Description = "A ResNet-18 with random weights instead of the ImageNet one, for comparison." };
        var output = new Option<string>("--out") { Description = "The output folder.", DefaultValueFactory = _ => Path.Combine("artifacts", "quickstart") };
        var imageSize = new Option<int>("--image-size") { Description = "Input size of the detectors in pixels.", DefaultValueFactory = _ => DefaultImageSize }.AtLeast(32);
        var epochs = new Option<int?>("--epochs") { Description = $"Training epochs of CFA and CFlow. Default: CFA's own (30), CFlow {CflowQuickEpochs}." }.AtLeast(1);
        var algorithms = new Option<string>("--algorithms") { Description = "Which detectors, comma-separated.", DefaultValueFactory = _ => "cfa,dfm,cflow" }
            .ListOf("cfa", "dfm", "cflow");
        var command = new RootCommand("Trains CFA, DFM and CFlow on good parts, scores a test set, evaluates, saves, reloads, and writes pictures and a report.")
        {
            data, category, backbone, untrained, output, imageSize, epochs, algorithms,
        };
        command.Validators.Add(r =>
        {
            if (r.GetResult(data) is not null && r.GetResult(category) is null)
                r.AddError("--data needs --category (an MVTec category folder name).");
            if (r.GetValue(untrained) && r.GetResult(backbone) is not null)
                r.AddError("--untrained and --backbone exclude each other.");
        });
        if (CommandLineParsing.Parse(command, args, out exitCode) is not { } parsed)
            return null;
        return new QuickstartSettings(
            parsed.GetValue(data),
            parsed.GetValue(category) ?? SyntheticDefectSet.Washer,
            parsed.GetValue(backbone),
            parsed.GetValue(untrained),
            parsed.GetValue(output)!,
            parsed.GetValue(imageSize),
            parsed.GetValue(epochs),
            CommandLineParsing.SplitList(parsed.GetValue(algorithms)!));
    }
}

/// <summary>What the quickstart measured for one algorithm.</summary>
internal sealed record AlgorithmResult(string Name, BackboneDescription Backbone, ImageAnomalyMetrics Metrics, double FitSeconds, double ImagesPerSecond,
    double ReloadMaxAbsDiff, float[] Scores, bool[] Labels, List<(string Algorithm, string OverlayPng, string Caption)> Overlays)
{
    /// <summary>The metrics.json entry; its keys are read by other tools and must stay stable.</summary>
    public Dictionary<string, object?> ToJson() => new()
    {
        ["backbone"] = new Dictionary<string, object> { ["name"] = Backbone.Name, ["source"] = Backbone.Source, ["pretrained"] = Backbone.IsPretrained },
        ["image_auroc"] = Metrics.ImageAuroc,
        ["pixel_auroc"] = Metrics.PixelAuroc,
        ["aupro"] = Metrics.Aupro,
        ["image_f1"] = Metrics.ImageF1Max,
        ["fit_seconds"] = FitSeconds,
        ["images_per_second"] = ImagesPerSecond,
        ["reload_max_abs_diff"] = ReloadMaxAbsDiff,
    };
}

