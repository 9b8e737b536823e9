using System.Numerics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Anomaly.Vision.Training;

/// <summary>One optimizer step from a loss: the gradient of the loss with respect to the parameters, then the update.</summary>
internal interface ILossStepper : IDisposable
{
    /// <summary>Takes one step that lowers <paramref name="loss"/>; temporaries go to the caller's dispose scope.</summary>
    void Step(Tensor loss);
}

/// <summary>
/// Adam (torch.optim.Adam without weight decay or AMSGrad: the same update, up to rounding) for float32 parameters
/// on the CPU, one fused pass over each parameter.
/// <para>
/// Design: when a step is many small tensors, its cost is the number of tensor operations and passes over memory
/// rather than the arithmetic. TorchSharp's Adam issues about ten tensor operations per parameter (CFlow's decoder
/// has 48 parameters), each a native call, an allocation or a pass over the parameter, plus zeroing every
/// gradient. Here the gradients come from <c>autograd.grad</c> (nothing to zero, no accumulation into
/// <c>.grad</c>) and one C# loop per parameter reads gradient, moments and value once and writes them once.
/// Concatenating all parameters into one buffer instead was slower: the working set leaves the caches.
/// </para>
/// </summary>
internal sealed class FusedAdam : ILossStepper
{
    private const float Beta1 = 0.9f, Beta2 = 0.999f, Epsilon = 1e-8f;
    private readonly Tensor[] _parameters;
    private readonly float[][] _expAvg;
    private readonly float[][] _expAvgSq;
    private readonly double _learningRate;
    private long _step;

    /// <param name="parameters">Contiguous float32 CPU parameters; each must receive a gradient at every step.</param>
    /// <param name="learningRate">Adam's learning rate.</param>
    public FusedAdam(IEnumerable<Parameter> parameters, double learningRate)
    {
        _parameters = parameters.Cast<Tensor>().ToArray();
        foreach (var p in _parameters)
            if (p.dtype != ScalarType.Float32 || p.device_type != DeviceType.CPU || !p.is_contiguous())
                throw new ArgumentException("FusedAdam takes contiguous float32 CPU parameters.", nameof(parameters));
        _learningRate = learningRate;
        _expAvg = _parameters.Select(p => new float[p.numel()]).ToArray();
        _expAvgSq = _parameters.Select(p => new float[p.numel()]).ToArray();
    }

    /// <inheritdoc />
    public void Step(Tensor loss)
    {
        var gradients = autograd.grad([loss], _parameters);
        _step++;
        double biasCorrection1 = 1 - Math.Pow(Beta1, _step);
        double biasCorrection2 = 1 - Math.Pow(Beta2, _step);
        float stepSize = (float)(_learningRate / biasCorrection1);
        float inverseSqrtCorrection2 = (float)(1 / Math.Sqrt(biasCorrection2));
        using var noGrad = no_grad();
        for (int i = 0; i < _parameters.Length; i++)
        {
            var gradient = gradients[i].contiguous();
            Update(MemoryMarshal.Cast<byte, float>(_parameters[i].bytes), MemoryMarshal.Cast<byte, float>(gradient.bytes),
                _expAvg[i], _expAvgSq[i], stepSize, inverseSqrtCorrection2);
        }
    }

    /// <summary>m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; p ← p − step·m / (√v·c + ε), c = 1/√(1−β₂ᵗ).</summary>
    internal static void Update(Span<float> values, ReadOnlySpan<float> gradient, Span<float> expAvg, Span<float> expAvgSq,
        float stepSize, float inverseSqrtCorrection2)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var beta1 = new Vector<float>(Beta1);
            var oneMinusBeta1 = new Vector<float>(1 - Beta1);
            var beta2 = new Vector<float>(Beta2);
            var oneMinusBeta2 = new Vector<float>(1 - Beta2);
            var epsilon = new Vector<float>(Epsilon);
            var correction = new Vector<float>(inverseSqrtCorrection2);
            var step = new Vector<float>(stepSize);
            var p = MemoryMarshal.Cast<float, Vector<float>>(values);
            var g = MemoryMarshal.Cast<float, Vector<float>>(gradient);
            var m = MemoryMarshal.Cast<float, Vector<float>>(expAvg);
            var v = MemoryMarshal.Cast<float, Vector<float>>(expAvgSq);
            for (int k = 0; k < p.Length; k++)
            {
                var gk = g[k];
                var mk = m[k] * beta1 + gk * oneMinusBeta1;
                var vk = v[k] * beta2 + gk * gk * oneMinusBeta2;
                m[k] = mk;
                v[k] = vk;
                p[k] -= step * (mk / (Vector.SquareRoot(vk) * correction + epsilon));
            }
            i = p.Length * Vector<float>.Count;
        }
        for (; i < values.Length; i++)
        {
            float g = gradient[i];
            float m = expAvg[i] * Beta1 + g * (1 - Beta1);
            float v = expAvgSq[i] * Beta2 + g * g * (1 - Beta2);
            expAvg[i] = m;
            expAvgSq[i] = v;
            values[i] -= stepSize * (m / (MathF.Sqrt(v) * inverseSqrtCorrection2 + Epsilon));
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }
}

/// <summary>TorchSharp's own Adam, one parameter at a time: used off the CPU, and the reference <see cref="FusedAdam"/> is measured and tested against.</summary>
internal sealed class PerParameterAdam(IEnumerable<Parameter> parameters, double learningRate) : ILossStepper
{
    private readonly optim.Optimizer _adam = optim.Adam(parameters, learningRate);

    /// <inheritdoc />
    public void Step(Tensor loss)
    {
        _adam.zero_grad();
        loss.backward();
        _adam.step();
    }

    /// <inheritdoc />
    public void Dispose() => _adam.Dispose();
}
