using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using Microsoft.ML.Anomaly.Vision.Tests.Backbones;

namespace Microsoft.ML.Anomaly.Vision.Tests.Detectors;

/// <summary>
/// A small synthetic defect set and an untrained ResNet-18 ONNX file, made once for all detector tests.
/// Images are 64×64 so that every detector fits in seconds.
/// </summary>
internal static class DetectorFixture
{
    public const int Size = 64;

    private static readonly Lazy<(string Root, string Backbone)> Files = new(Create);

    public static string DataRoot => Files.Value.Root;

    public static string BackbonePath => Files.Value.Backbone;

    public static string Category => SyntheticDefectSet.Washer;

    public static IDataView Train(MLContext ml) => ml.Data.LoadMvtecAd(DataRoot, Category, MvtecSplit.Train);

    public static IDataView Test(MLContext ml) => ml.Data.LoadMvtecAd(DataRoot, Category, MvtecSplit.Test);

    /// <summary>
    /// The estimator of a detector by short name, with few epochs: cfa, dfm-fre, dfm-nll, cflow; on the untrained test
    /// backbone, or on the library's default (the ImageNet ResNet-18) when <paramref name="defaultBackbone"/> is set.
    /// </summary>
    public static IEstimator<ITransformer> Estimator(MLContext ml, string detector, bool defaultBackbone = false) =>
        Estimator(ml, Options(detector, defaultBackbone));

    /// <summary>The estimator for <paramref name="options"/> (made by <see cref="Options"/>).</summary>
    public static IEstimator<ITransformer> Estimator(MLContext ml, BackboneDetectorOptions options) => options switch
    {
        CfaOptions cfa => ml.Transforms.DetectCfaAnomalies(cfa),
        DfmOptions dfm => ml.Transforms.DetectDfmAnomalies(dfm),
        CflowOptions cflow => ml.Transforms.DetectCflowAnomalies(cflow),
        _ => throw new ArgumentException(options.GetType().Name, nameof(options)),
    };

    /// <summary>The options of a detector by short name, as <see cref="Estimator(MLContext, string, bool)"/> uses them.</summary>
    public static BackboneDetectorOptions Options(string detector, bool defaultBackbone = false)
    {
        string? backbonePath = defaultBackbone ? null : BackbonePath;
        return detector switch
        {
            "cfa" => new CfaOptions
            { BackbonePath = backbonePath, InputColumnName = "ImagePath", ImageHeight = Size, ImageWidth = Size, Epochs = 2, BatchSize = 8 },
            "dfm-fre" or "dfm-nll" => new DfmOptions
            {
                BackbonePath = backbonePath, InputColumnName = "ImagePath", ImageHeight = Size, ImageWidth = Size, Layer = "layer2",
                ScoreType = detector == "dfm-fre" ? DfmScoreType.Fre : DfmScoreType.Nll,
            },
            "cflow" => new CflowOptions
            {
                BackbonePath = backbonePath, InputColumnName = "ImagePath", ImageHeight = Size, ImageWidth = Size, Epochs = 1,
                ConditionVectorSize = 16, CouplingBlocks = 2, BatchSize = 8, FiberBatchSize = 16,
            },
            _ => throw new ArgumentException(detector, nameof(detector)),
        };
    }

    private static (string, string) Create()
    {
        string folder = TestImages.NewDirectory();
        string root = Path.Combine(folder, "data");
        SyntheticDefectSet.Generate(root, new SyntheticDefectSetOptions
        {
            Categories = [SyntheticDefectSet.Washer], ImageSize = Size, TrainCount = 12, TestGoodCount = 4, TestDefectCount = 4,
        });
        string backbone = Path.Combine(folder, "resnet18-untrained.onnx");
        File.WriteAllBytes(backbone, BackboneTestModels.UntrainedResNet18);
        return (root, backbone);
    }
}

/// <summary>One scored row read back from a detector's output.</summary>
public sealed class ScoredRow
{
    /// <summary>The image path.</summary>
    public string ImagePath { get; set; } = "";

    /// <summary>The anomaly score.</summary>
    public float Score { get; set; }
}
