using System.Globalization;
using Microsoft.ML.Anomaly.Vision;

namespace Quickstart;

/// <summary>Command-line settings of the quickstart.</summary>
internal sealed record QuickstartSettings(string? DataRoot, string Category, string? BackbonePath, bool Untrained, string OutputFolder,
    int ImageSize, int? Epochs, IReadOnlyList<string> Algorithms)
{
    /// <summary>CFlow epochs when --epochs is not given (its default, 50, takes too long for a quickstart on a CPU).</summary>
    public const int CflowQuickEpochs = 3;

    /// <summary>Input size of the detectors here: 128 pixels keeps CFA's 30 training epochs within the quickstart's budget on a CPU.</summary>
    private const string DefaultImageSize = "128";

    private const string Usage =
        "usage: Quickstart [--data <MVTec root> --category <name>] [--backbone <model.onnx|checkpoint.pth|.safetensors> | --untrained]\n" +
        "                  [--out <folder>] [--image-size <pixels>] [--epochs <n>] [--algorithms cfa,dfm,cflow]";

    public static QuickstartSettings? Parse(string[] args)
    {
        var values = new Dictionary<string, string>();
        bool untrained = false;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--untrained")
            {
                untrained = true;
                continue;
            }
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            {
                Console.Error.WriteLine(args[i] is "--help" or "-h" ? Usage : $"unexpected argument '{args[i]}'\n{Usage}");
                return null;
            }
            values[args[i][2..]] = args[++i];
        }
        string[] known = ["data", "category", "backbone", "out", "image-size", "epochs", "algorithms"];
        if (values.Keys.FirstOrDefault(k => !known.Contains(k)) is string unknown)
        {
            Console.Error.WriteLine($"unknown option --{unknown}\n{Usage}");
            return null;
        }
        if (values.ContainsKey("data") && !values.ContainsKey("category"))
        {
            Console.Error.WriteLine($"--data needs --category (an MVTec category folder name)\n{Usage}");
            return null;
        }
        if (untrained && values.ContainsKey("backbone"))
        {
            Console.Error.WriteLine($"--untrained and --backbone exclude each other\n{Usage}");
            return null;
        }
        string[] algorithms = (values.GetValueOrDefault("algorithms") ?? "cfa,dfm,cflow").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (algorithms.Length == 0 || algorithms.Any(a => a is not ("cfa" or "dfm" or "cflow")))
        {
            Console.Error.WriteLine($"--algorithms takes a comma-separated list of cfa, dfm, cflow\n{Usage}");
            return null;
        }
        return new QuickstartSettings(
            values.GetValueOrDefault("data"),
            values.GetValueOrDefault("category") ?? SyntheticDefectSet.Washer,
            values.GetValueOrDefault("backbone"),
            untrained,
            values.GetValueOrDefault("out") ?? Path.Combine("artifacts", "quickstart"),
            int.Parse(values.GetValueOrDefault("image-size") ?? DefaultImageSize, CultureInfo.InvariantCulture),
            values.TryGetValue("epochs", out string? epochs) ? int.Parse(epochs, CultureInfo.InvariantCulture) : null,
            algorithms);
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

