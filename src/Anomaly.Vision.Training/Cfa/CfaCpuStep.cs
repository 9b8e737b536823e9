using TorchSharp;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training;

/// <summary>
/// CFA's training step on the CPU, with the gradient formed by hand rather than by autograd through the distances
/// and the descriptor. It is the same gradient: the loss depends on the features only through each patch's k nearest
/// squared distances, so ∂L/∂f = Σ_j ∂L/∂d_j · 2 (f − c_j) over the selected entries (see
/// <see cref="MemoryBank.FeatureGradient(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{int}, ReadOnlySpan{float}, int, int, Span{float})"/>),
/// and the 1×1 convolution's gradients are ∂L/∂W = Gᵀ·X and ∂L/∂b = Σ_p G_p for its input X and G = ∂L/∂f.
/// </summary>
/// <remarks>
/// Per chunk of images: the features F (<see cref="PatchMajorDescriptor"/>), the k nearest entries and their fp32
/// distances (<see cref="MemoryBankScorer"/>, no distance matrix), the loss and ∂L/∂d through LibTorch on the small
/// [images, patches, k] tensor, G, then the descriptor's gradients added to the step's
/// (<see cref="PatchMajorDescriptor.AddGradients"/>). <see cref="ApplyGradients"/> hands the step's gradients to the
/// parameters for the optimiser. Buffers are kept between chunks: fresh arrays of these sizes would be zeroed on every chunk.
/// </remarks>
internal sealed class CfaCpuStep
{
    private readonly Descriptor _descriptor;
    private readonly PatchMajorDescriptor _patchMajor;
    private readonly MemoryBankScorer? _scorer;
    private readonly float[]? _bank;
    private readonly int _nearestNeighbors;
    private readonly int _hardNegatives;
    private readonly float _radius;
    private readonly int _k;
    private readonly int _in;
    private readonly int _out;
    private readonly float[] _weightGradient;
    private readonly float[] _biasGradient;
    private float[] _weight = [];
    private float[] _bias = [];
    private float[] _features = [];
    private float[] _featureGradient = [];
    private float[] _distances = [];
    private int[] _entries = [];

    /// <summary>
    /// Creates the step; without a bank (while the bank is being built) only <see cref="Describe"/> is available.
    /// <paramref name="projectionRank"/> is the nearest-entry scan's bound (see <see cref="MemoryBankScorer"/>).
    /// </summary>
    public CfaCpuStep(Descriptor descriptor, float[]? bank, int bankSize, CfaTrainingOptions options, int projectionRank)
    {
        _descriptor = descriptor;
        _bank = bank;
        _out = descriptor.OutChannels;
        _in = descriptor.InChannels + 2;
        _patchMajor = new PatchMajorDescriptor(descriptor.Layers, _out);
        _scorer = bank is null ? null : new MemoryBankScorer(bank, bankSize, _out, System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated,
            MemoryBankScorer.DefaultDepthBlock, projectionRank);
        _nearestNeighbors = options.NumNearestNeighbors;
        _hardNegatives = options.NumHardNegativeFeatures;
        _radius = options.Radius;
        _k = _nearestNeighbors + _hardNegatives;
        _weightGradient = new float[_out * _in];
        _biasGradient = new float[_out];
    }

    /// <summary>Starts a step: takes the parameters' current values and clears the gradients.</summary>
    public void Begin()
    {
        _weight = CfaTensors.ToArray(_descriptor.Weight);
        _bias = CfaTensors.ToArray(_descriptor.Bias);
        Array.Clear(_weightGradient);
        Array.Clear(_biasGradient);
    }

    /// <summary>Target-oriented features of a chunk, patch-major [images · patches, Out], with the parameters taken by <see cref="Begin"/>.</summary>
    public ReadOnlySpan<float> Describe(IReadOnlyList<Tensor> maps)
    {
        int rows = checked((int)maps[0].shape[0] * _descriptor.GridHeight * _descriptor.GridWidth);
        if (_features.Length < rows * _out)
        {
            _features = GC.AllocateUninitializedArray<float>(rows * _out);
            _featureGradient = GC.AllocateUninitializedArray<float>(rows * _out);
            _distances = new float[rows * _k];
            _entries = new int[rows * _k];
        }
        _patchMajor.Forward(maps.Select(CfaTensors.ToArray).ToArray(), (int)maps[0].shape[0], _weight, _bias, _features);
        return _features.AsSpan(0, rows * _out);
    }

    /// <summary>Adds a chunk's gradient, its loss scaled by <paramref name="share"/>, to the step's; returns that scaled loss.</summary>
    public float AddChunk(IReadOnlyList<Tensor> maps, float share)
    {
        int images = (int)maps[0].shape[0];
        int patches = _descriptor.GridHeight * _descriptor.GridWidth;
        int rows = images * patches;
        if (_scorer is null || _bank is null)
            throw new InvalidOperationException("The step has no memory bank yet.");
        var features = Describe(maps);
        _scorer.Nearest(features, rows, _k, _distances, _entries);

        float loss;
        float[] distanceGradient;
        using (var scope = NewDisposeScope())
        {
            var nearest = CfaTensors.FromArray(_distances.AsSpan(0, rows * _k), new long[] { images, patches, _k }).requires_grad_(true);
            var scaled = CfaLoss.FromNearest(nearest, 2, _nearestNeighbors, _hardNegatives, _radius).Mul(share);
            scaled.backward();
            loss = scaled.item<float>();
            distanceGradient = CfaTensors.ToArray(nearest.grad!);
        }

        var gradient = _featureGradient.AsSpan(0, rows * _out);
        MemoryBank.FeatureGradient(features, distanceGradient, _entries.AsSpan(0, rows * _k), _bank, _out, _k, gradient);
        _patchMajor.AddGradients(images, gradient, _weightGradient, _biasGradient);
        return loss;
    }

    /// <summary>Sets the parameters' gradients to the step's (through autograd of Σ W ⊙ ∂L/∂W + Σ b ⊙ ∂L/∂b).</summary>
    public void ApplyGradients()
    {
        using var scope = NewDisposeScope();
        var weightGradient = CfaTensors.FromArray(_weightGradient, _descriptor.Weight.shape);
        var biasGradient = CfaTensors.FromArray(_biasGradient, _descriptor.Bias.shape);
        (_descriptor.Weight * weightGradient).sum().Add((_descriptor.Bias * biasGradient).sum()).backward();
    }
}
