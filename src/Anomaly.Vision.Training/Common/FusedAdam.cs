using System.Numerics;
using System.Runtime.InteropServices;

namespace Anomaly.Vision.Training;

/// <summary>
/// Adam (torch.optim.Adam without weight decay or AMSGrad: the same update, up to rounding) over float32 parameters
/// held in C# arrays, one fused pass over each parameter: gradient, moments and value are read once and written once.
/// </summary>
internal sealed class FusedAdam
{
    private const float Beta1 = 0.9f, Beta2 = 0.999f, Epsilon = 1e-8f;
    private readonly float[][] _expAvg;
    private readonly float[][] _expAvgSq;
    private readonly double _learningRate;
    private long _step;
    private float _stepSize, _inverseSqrtCorrection2;

    /// <param name="parameterLengths">The number of values of each parameter, in the order <see cref="Update"/> is given them.</param>
    /// <param name="learningRate">Adam's learning rate.</param>
    public FusedAdam(IEnumerable<int> parameterLengths, double learningRate)
    {
        _learningRate = learningRate;
        _expAvg = parameterLengths.Select(n => new float[n]).ToArray();
        _expAvgSq = _expAvg.Select(m => new float[m.Length]).ToArray();
    }

    /// <summary>Starts a step: every parameter is then updated once with <see cref="Update"/>.</summary>
    public void BeginStep()
    {
        _step++;
        double biasCorrection1 = 1 - Math.Pow(Beta1, _step);
        double biasCorrection2 = 1 - Math.Pow(Beta2, _step);
        _stepSize = (float)(_learningRate / biasCorrection1);
        _inverseSqrtCorrection2 = (float)(1 / Math.Sqrt(biasCorrection2));
    }

    /// <summary>m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; p ← p − step·m / (√v·c + ε), c = 1/√(1−β₂ᵗ).</summary>
    /// <param name="parameter">The parameter's index.</param>
    /// <param name="values">Its values, updated in place.</param>
    /// <param name="gradient">Its gradient.</param>
    public void Update(int parameter, Span<float> values, ReadOnlySpan<float> gradient)
    {
        Span<float> expAvg = _expAvg[parameter], expAvgSq = _expAvgSq[parameter];
        if (values.Length != expAvg.Length || gradient.Length != expAvg.Length)
            throw new ArgumentException($"Parameter {parameter} has {expAvg.Length} values; got {values.Length} values and {gradient.Length} gradients.");
        float stepSize = _stepSize, inverseSqrtCorrection2 = _inverseSqrtCorrection2;
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
}
