using Anomaly.Vision.Training;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>The detectors a sweep can try.</summary>
public enum SweepDetector
{
    /// <summary>CFA: <see cref="CfaEstimator"/>.</summary>
    Cfa = 0,

    /// <summary>DFM: <see cref="DfmEstimator"/>.</summary>
    Dfm = 1,

    /// <summary>CFlow: <see cref="CflowEstimator"/>.</summary>
    Cflow = 2,
}

/// <summary>
/// The settings a sweep tries for one detector. Each setting is a <see cref="SearchParameter{T}"/> whose default is
/// the detector's default value, so a new space holds one configuration; widen the settings that matter.
/// </summary>
public abstract class DetectorSearchSpace
{
    private protected DetectorSearchSpace()
    {
    }

    /// <summary>The detector these settings are for.</summary>
    public abstract SweepDetector Detector { get; }

    /// <summary>Every configuration of the grid (the Cartesian product of the settings' grid values).</summary>
    internal abstract IEnumerable<TrialPlan> Grid();

    /// <summary>One configuration drawn at random.</summary>
    internal abstract TrialPlan Sample(ref DeterministicRandom random);
}

/// <summary>A <see cref="DetectorSearchSpace"/> whose trials are configured through <typeparamref name="TOptions"/>.</summary>
/// <typeparam name="TOptions">The detector's options.</typeparam>
public abstract class DetectorSearchSpace<TOptions> : DetectorSearchSpace
    where TOptions : BackboneDetectorOptions, new()
{
    private protected DetectorSearchSpace()
    {
    }

    /// <summary>
    /// Sets options every trial of this detector shares and the sweep does not search (e.g. CFlow's fiber batch size),
    /// after the searched settings are applied. The sweep itself sets the backbone, input size, columns, device,
    /// batch size, seed, progress and cancellation.
    /// </summary>
    public Action<TOptions>? Configure { get; set; }

    internal override IEnumerable<TrialPlan> Grid()
    {
        Dimension[] dimensions = Dimensions();
        var chosen = new object?[dimensions.Length];
        return Expand(0);

        IEnumerable<TrialPlan> Expand(int d)
        {
            if (d == dimensions.Length)
            {
                yield return Plan(dimensions, (object?[])chosen.Clone());
                yield break;
            }
            foreach (object? value in dimensions[d].Grid)
            {
                chosen[d] = value;
                foreach (TrialPlan plan in Expand(d + 1))
                    yield return plan;
            }
        }
    }

    internal override TrialPlan Sample(ref DeterministicRandom random)
    {
        Dimension[] dimensions = Dimensions();
        var chosen = new object?[dimensions.Length];
        for (int d = 0; d < dimensions.Length; d++)
            chosen[d] = dimensions[d].Sample(ref random);
        return Plan(dimensions, chosen);
    }

    /// <summary>The searched settings, in the order they are listed.</summary>
    private protected abstract Dimension[] Dimensions();

    /// <summary>A searched setting: its name, values and how it is set on the options.</summary>
    private protected static Dimension Setting<T>(string name, SearchParameter<T> values, Action<TOptions, T> apply)
    {
        ArgumentNullException.ThrowIfNull(values, name);
        return new Dimension(name, values.GridValues.Cast<object?>().ToArray(),
            (ref DeterministicRandom random) => values.Sample(ref random), (options, value) => apply(options, (T)value!));
    }

    private TrialPlan Plan(Dimension[] dimensions, object?[] chosen)
    {
        var settings = dimensions.Select((d, i) => new KeyValuePair<string, string>(d.Name, SearchParameter.Format(chosen[i]))).ToArray();
        Action<TOptions>? configure = Configure;
        return new TrialPlan(Detector, settings, () =>
        {
            var options = new TOptions();
            for (int d = 0; d < dimensions.Length; d++)
                dimensions[d].Apply(options, chosen[d]);
            configure?.Invoke(options);
            return options;
        });
    }

    private protected delegate object? Sampler(ref DeterministicRandom random);

    private protected sealed record Dimension(string Name, IReadOnlyList<object?> Grid, Sampler Sample, Action<TOptions, object?> Apply);
}

/// <summary>CFA settings to search (defaults: anomalib's; ResNet layers 1–3).</summary>
public sealed class CfaSearchSpace : DetectorSearchSpace<CfaOptions>
{
    /// <inheritdoc />
    public override SweepDetector Detector => SweepDetector.Cfa;

    /// <summary>Backbone layer sets (<see cref="CfaOptions.Layers"/>).</summary>
    public SearchParameter<string[]> Layers { get; set; } = new[] { "layer1", "layer2", "layer3" };

    /// <summary>Memory-bank compression (<see cref="CfaOptions.GammaC"/>).</summary>
    public SearchParameter<int> GammaC { get; set; } = 1;

    /// <summary>Descriptor compression (<see cref="CfaOptions.GammaD"/>).</summary>
    public SearchParameter<int> GammaD { get; set; } = 1;

    /// <summary>Nearest neighbours (<see cref="CfaOptions.NumNearestNeighbors"/>).</summary>
    public SearchParameter<int> NumNearestNeighbors { get; set; } = 3;

    /// <summary>Training epochs (<see cref="CfaOptions.Epochs"/>).</summary>
    public SearchParameter<int> Epochs { get; set; } = 30;

    private protected override Dimension[] Dimensions() =>
    [
        Setting(nameof(Layers), Layers, (o, v) => o.Layers = v),
        Setting(nameof(GammaC), GammaC, (o, v) => o.GammaC = v),
        Setting(nameof(GammaD), GammaD, (o, v) => o.GammaD = v),
        Setting(nameof(NumNearestNeighbors), NumNearestNeighbors, (o, v) => o.NumNearestNeighbors = v),
        Setting(nameof(Epochs), Epochs, (o, v) => o.Epochs = v),
    ];
}

/// <summary>DFM settings to search (defaults: anomalib's).</summary>
public sealed class DfmSearchSpace : DetectorSearchSpace<DfmOptions>
{
    /// <inheritdoc />
    public override SweepDetector Detector => SweepDetector.Dfm;

    /// <summary>Backbone layer (<see cref="DfmOptions.Layer"/>).</summary>
    public SearchParameter<string> Layer { get; set; } = "layer3";

    /// <summary>Pooling kernel (<see cref="DfmOptions.PoolingKernelSize"/>).</summary>
    public SearchParameter<int> PoolingKernelSize { get; set; } = 4;

    /// <summary>PCA variance share or component count (<see cref="DfmOptions.VarianceShare"/>).</summary>
    public SearchParameter<float> VarianceShare { get; set; } = 0.97f;

    /// <summary>Score type (<see cref="DfmOptions.ScoreType"/>); the NLL score gives no anomaly map, so pixel metrics are unavailable for it.</summary>
    public SearchParameter<DfmScoreType> ScoreType { get; set; } = DfmScoreType.Fre;

    private protected override Dimension[] Dimensions() =>
    [
        Setting(nameof(Layer), Layer, (o, v) => o.Layer = v),
        Setting(nameof(PoolingKernelSize), PoolingKernelSize, (o, v) => o.PoolingKernelSize = v),
        Setting(nameof(VarianceShare), VarianceShare, (o, v) => o.VarianceShare = v),
        Setting(nameof(ScoreType), ScoreType, (o, v) => o.ScoreType = v),
    ];
}

/// <summary>CFlow settings to search (defaults: anomalib's).</summary>
public sealed class CflowSearchSpace : DetectorSearchSpace<CflowOptions>
{
    /// <inheritdoc />
    public override SweepDetector Detector => SweepDetector.Cflow;

    /// <summary>Backbone layer sets (<see cref="CflowOptions.Layers"/>).</summary>
    public SearchParameter<string[]> Layers { get; set; } = new[] { "layer2", "layer3", "layer4" };

    /// <summary>Coupling blocks per flow (<see cref="CflowOptions.CouplingBlocks"/>).</summary>
    public SearchParameter<int> CouplingBlocks { get; set; } = 8;

    /// <summary>Condition vector size, a multiple of 4 (<see cref="CflowOptions.ConditionVectorSize"/>).</summary>
    public SearchParameter<int> ConditionVectorSize { get; set; } = 128;

    /// <summary>Training epochs (<see cref="CflowOptions.Epochs"/>).</summary>
    public SearchParameter<int> Epochs { get; set; } = 50;

    private protected override Dimension[] Dimensions() =>
    [
        Setting(nameof(Layers), Layers, (o, v) => o.Layers = v),
        Setting(nameof(CouplingBlocks), CouplingBlocks, (o, v) => o.CouplingBlocks = v),
        Setting(nameof(ConditionVectorSize), ConditionVectorSize, (o, v) => o.ConditionVectorSize = v),
        Setting(nameof(Epochs), Epochs, (o, v) => o.Epochs = v),
    ];
}

/// <summary>One configuration of a detector, before the sweep sets its shared options.</summary>
internal sealed class TrialPlan(SweepDetector detector, IReadOnlyList<KeyValuePair<string, string>> settings, Func<BackboneDetectorOptions> create)
{
    public SweepDetector Detector { get; } = detector;

    /// <summary>The searched settings as text, in order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Settings { get; } = settings;

    /// <summary>Identifies the configuration (detector and settings).</summary>
    public string Key { get; } = detector + ":" + string.Join(";", settings.Select(s => s.Key + "=" + s.Value));

    /// <summary>Fresh options with the searched settings (and <see cref="DetectorSearchSpace{TOptions}.Configure"/>) applied.</summary>
    public BackboneDetectorOptions CreateOptions() => create();
}
