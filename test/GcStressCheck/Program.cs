// Usage: GcStressCheck <seconds> [<data root> <category> <backbone.onnx>]
// While a background thread loops GC.Collect(); GC.WaitForPendingFinalizers(): with a data set and a backbone, fits and
// scores the three ML.NET estimators once; then, until <seconds> have passed since the start (and at least twice), fits
// CFA, CFlow and DFM on tiny synthetic features and scores with them, on the CPU both through the C# kernels and through
// LibTorch (the path other devices take). Every round must give bit for bit the results of the first. Prints one line
// per detector and "completed"; exits with 1 when a round's results differ, and aborts if native code is handed a freed handle.
using System.Diagnostics;
using System.Globalization;
using Anomaly.Vision.Training;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Data;

double seconds = double.Parse(args[0], CultureInfo.InvariantCulture);
var watch = Stopwatch.StartNew();
var hammer = new Thread(() =>
{
    while (true)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
    }
}) { IsBackground = true, Name = "gc-stress" };
hammer.Start();

if (args.Length >= 4)
    FitEstimators(args[1], args[2], args[3]);

var features = TinyFeatures();
var first = new Dictionary<string, float[]>();
var rounds = new Dictionary<string, int>();
do
{
    foreach (var (name, run) in Workloads())
    {
        var result = run(features);
        if (!first.TryGetValue(name, out var expected))
            first[name] = result;
        else if (!expected.AsSpan().SequenceEqual(result))
        {
            Console.WriteLine($"{name}: round {rounds[name] + 1} differs from the first");
            return 1;
        }
        rounds[name] = rounds.GetValueOrDefault(name) + 1;
    }
} while (watch.Elapsed.TotalSeconds < seconds || rounds.Values.Min() < 2);

foreach (var (name, count) in rounds)
    Console.WriteLine($"{name}: {count} rounds, {first[name].Length} values, all equal to the first round's");
Console.WriteLine("completed");
return 0;

static IEnumerable<(string Name, Func<InMemoryFeatureSource, float[]> Run)> Workloads()
{
    var cfa = new CfaTrainingOptions { Epochs = 3, BatchSize = 4, Seed = 1 };
    yield return ("cfa-csharp", f => ScoreCfa(CfaTrainer.Train(f, cfa, null, default, chunkBytes: null, cpuKernels: true), f));
    yield return ("cfa-libtorch", f => ScoreCfa(CfaTrainer.Train(f, cfa, null, default, chunkBytes: 256, cpuKernels: false), f));
    var cflow = new CflowTrainingOptions { Epochs = 2, BatchSize = 4, FiberBatchSize = 16, ConditionVectorSize = 8, CouplingBlocks = 2, Seed = 1 };
    yield return ("cflow-csharp", f => ScoreCflow(CflowTrainer.Train(f, cflow, null, default, throughLibTorch: false), f));
    yield return ("cflow-libtorch", f => ScoreCflow(CflowTrainer.Train(f, cflow, null, default, throughLibTorch: true), f));
    foreach (var type in new[] { DfmScoreType.Fre, DfmScoreType.Nll })
        yield return ($"dfm-{type}".ToLowerInvariant(), f => ScoreDfm(DfmTrainer.Fit(new SingleLayer(f), new DfmTrainingOptions { PoolingKernelSize = 2, ScoreType = type }), f));
}

static float[] ScoreCfa(CfaModel model, InMemoryFeatureSource features)
{
    var maps = Batch(features, 0);
    var descriptors = new float[features.Count * model.GridHeight * model.GridWidth * model.DescriptorChannels];
    model.Describe(maps, features.Count, descriptors);
    return descriptors;
}

static float[] ScoreCflow(CflowModel model, InMemoryFeatureSource features)
{
    using (model)
    {
        var maps = Batch(features, 0);
        var destination = features.Layers.Select(l => new float[features.Count * l.Height * l.Width]).ToArray();
        model.LogLikelihoods(maps, features.Count, destination);
        return destination.SelectMany(d => d).ToArray();
    }
}

static float[] ScoreDfm(DfmModel model, InMemoryFeatureSource features)
{
    var scores = new float[features.Count];
    var map = new float[features.Layers[0].Size];
    for (int i = 0; i < features.Count; i++)
    {
        features.Read(i, 0, map);
        scores[i] = model.Score(map, Span<float>.Empty);
    }
    return scores;
}

static float[][] Batch(InMemoryFeatureSource features, int start)
{
    var maps = features.Layers.Select(l => new float[features.Count * l.Size]).ToArray();
    for (int l = 0; l < maps.Length; l++)
        for (int i = start; i < features.Count; i++)
            features.Read(i, l, maps[l].AsSpan(i * features.Layers[l].Size, features.Layers[l].Size));
    return maps;
}

static InMemoryFeatureSource TinyFeatures()
{
    var layers = new[] { new LayerShape(6, 4, 4), new LayerShape(8, 2, 2) };
    var source = new InMemoryFeatureSource(layers);
    var random = new Random(7);
    for (int i = 0; i < 16; i++)
        source.Add(layers.Select(l => Enumerable.Range(0, l.Size).Select(_ => (float)random.NextDouble()).ToArray()).ToArray());
    return source;
}

static void FitEstimators(string dataRoot, string category, string backbone)
{
    const int size = 64;
    var ml = new MLContext(seed: 1);
    var train = ml.Data.LoadMvtecAd(dataRoot, category, MvtecSplit.Train);
    var test = ml.Data.LoadMvtecAd(dataRoot, category, MvtecSplit.Test);
    var estimators = new (string Name, IEstimator<ITransformer> Estimator)[]
    {
        ("cfa", ml.Transforms.DetectCfaAnomalies(new CfaOptions
            { BackbonePath = backbone, InputColumnName = "ImagePath", ImageHeight = size, ImageWidth = size, Epochs = 2, BatchSize = 8 })),
        ("cflow", ml.Transforms.DetectCflowAnomalies(new CflowOptions
        {
            BackbonePath = backbone, InputColumnName = "ImagePath", ImageHeight = size, ImageWidth = size, Epochs = 1,
            ConditionVectorSize = 16, CouplingBlocks = 2, BatchSize = 8, FiberBatchSize = 16,
        })),
        ("dfm", ml.Transforms.DetectDfmAnomalies(new DfmOptions
            { BackbonePath = backbone, InputColumnName = "ImagePath", ImageHeight = size, ImageWidth = size, Layer = "layer2" })),
    };
    foreach (var (name, estimator) in estimators)
    {
        var model = estimator.Fit(train);
        var scores = model.Transform(test).GetColumn<float>("Score").ToArray();
        (model as IDisposable)?.Dispose();
        Console.WriteLine($"{name} (ML.NET): {scores.Length} images scored, all finite: {scores.All(float.IsFinite)}");
    }
}

/// <summary>The first layer of a feature source, for DFM, which reads one layer.</summary>
internal sealed class SingleLayer(IFeatureSource source) : IFeatureSource
{
    public int Count => source.Count;

    public IReadOnlyList<LayerShape> Layers => [source.Layers[0]];

    public void Read(int image, int layer, Span<float> destination) => source.Read(image, layer, destination);
}
