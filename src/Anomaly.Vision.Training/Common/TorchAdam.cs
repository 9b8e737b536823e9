using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Anomaly.Vision.Training;

/// <summary>
/// Adam and AdamW (with AMSGrad optional) over LibTorch parameters on any device: the update of TorchSharp's
/// <c>optim.Adam</c> and <c>optim.AdamW</c>, operation for operation, with every Scalar held through its call.
/// TorchSharp's optimizers make their Scalars on the fly (see <see cref="ScalarMath"/>), so a garbage collection on
/// another thread can free one during a step.
/// </summary>
internal sealed class TorchAdam : IDisposable
{
    private const double Beta1 = 0.9, Beta2 = 0.999, Epsilon = 1e-8;
    private readonly Parameter[] _parameters;
    private readonly Tensor[] _expAvg;
    private readonly Tensor[] _expAvgSq;
    private readonly Tensor[]? _maxExpAvgSq;
    private readonly double _learningRate;
    private readonly double? _decoupledWeightDecay;
    private long _step;

    private TorchAdam(IEnumerable<Parameter> parameters, double learningRate, double? decoupledWeightDecay, bool amsgrad)
    {
        _parameters = parameters.ToArray();
        _learningRate = learningRate;
        _decoupledWeightDecay = decoupledWeightDecay;
        using (no_grad())
        {
            _expAvg = _parameters.Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray();
            _expAvgSq = _parameters.Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray();
            _maxExpAvgSq = amsgrad ? _parameters.Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray() : null;
        }
    }

    /// <summary>Adam without weight decay or AMSGrad (torch.optim.Adam's defaults).</summary>
    public static TorchAdam Adam(IEnumerable<Parameter> parameters, double learningRate) =>
        new(parameters, learningRate, decoupledWeightDecay: null, amsgrad: false);

    /// <summary>AdamW: the parameters shrink by lr · <paramref name="weightDecay"/> before each update.</summary>
    public static TorchAdam AdamW(IEnumerable<Parameter> parameters, double learningRate, double weightDecay, bool amsgrad) =>
        new(parameters, learningRate, weightDecay, amsgrad);

    /// <summary>Sets every parameter's gradient to zero.</summary>
    public void ZeroGrad()
    {
        foreach (var parameter in _parameters)
        {
            using var grad = parameter.grad;
            grad?.zero_();
        }
    }

    /// <summary>
    /// One update of every parameter that has a gradient: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², v̂ = v (or, with AMSGrad,
    /// the running maximum of v), p ← p − lr/(1−β₁ᵗ) · m / (√v̂ / √(1−β₂ᵗ) + ε).
    /// </summary>
    public void Step()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        _step++;
        double biasCorrection1 = 1 - Math.Pow(Beta1, _step);
        double biasCorrection2 = 1 - Math.Pow(Beta2, _step);
        using var decay = (1 - _learningRate * (_decoupledWeightDecay ?? 0)).ToScalar();
        using var beta1 = Beta1.ToScalar();
        using var oneMinusBeta1 = (1 - Beta1).ToScalar();
        using var beta2 = Beta2.ToScalar();
        using var oneMinusBeta2 = (1 - Beta2).ToScalar();
        using var sqrtBiasCorrection2 = Math.Sqrt(biasCorrection2).ToScalar();
        using var epsilon = Epsilon.ToScalar();
        using var one = 1.ToScalar();
        using var minusStepSize = (-(_learningRate / biasCorrection1)).ToScalar();
        for (int i = 0; i < _parameters.Length; i++)
        {
            var parameter = _parameters[i];
            var grad = parameter.grad;
            if (grad is null)
                continue;
            if (_decoupledWeightDecay is not null)
                parameter.mul_(decay);
            _expAvg[i].mul_(beta1).add_(grad, oneMinusBeta1);
            _expAvgSq[i].mul_(beta2).addcmul_(grad, grad, oneMinusBeta2);
            var secondMoment = _expAvgSq[i];
            if (_maxExpAvgSq is not null)
            {
                var previous = _maxExpAvgSq[i];
                _maxExpAvgSq[i] = maximum(previous, _expAvgSq[i]).DetachFromDisposeScope();
                previous.Dispose();
                secondMoment = _maxExpAvgSq[i];
            }
            var denominator = secondMoment.sqrt().div(sqrtBiasCorrection2).add_(epsilon, one);
            parameter.addcdiv_(_expAvg[i], denominator, minusStepSize);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in _expAvg.Concat(_expAvgSq).Concat(_maxExpAvgSq ?? []))
            t.Dispose();
    }
}
