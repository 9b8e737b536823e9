using Anomaly.Vision.Training;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Anomaly.Vision.Training.Tests.Cflow;

/// <summary><see cref="AllInOneCouplingBlock.GlobalScaleActivation"/> computes F.softplus(g, 0.5, 20) · 0.1.</summary>
[TestClass]
public sealed class GlobalScaleActivationTests
{
    [TestMethod]
    [DataRow(ScalarType.Float32)]
    [DataRow(ScalarType.Float64)]
    public void ValuesAndGradientsAreSoftplusToWithinARounding(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(5, CPU);
        // g from −60 to 60: β·g crosses the threshold of 20 (at g = 40), and the initial value (≈ 9.99) is inside.
        const int channels = 241;
        using var block = new AllInOneCouplingBlock(channels, 4, 1.9f, false, generator, dtype, CPU);
        using (no_grad())
            block.GlobalScale.copy_(linspace(-60, 60, channels, dtype: dtype));
        var weights = randn(new long[] { channels }, dtype: dtype, generator: generator);

        var activation = block.GlobalScaleActivation();
        (activation * weights).sum().backward();
        var gradient = block.GlobalScale.grad!.clone();
        block.GlobalScale.grad!.zero_();
        var reference = F.softplus(block.GlobalScale, 0.5, 20) * 0.1;
        (reference * weights).sum().backward();

        // Equal to within one rounding of the type (LibTorch's fused kernel rounds once less in a few places).
        double unit = dtype == ScalarType.Float32 ? Math.Pow(2, -23) : Math.Pow(2, -52);
        AssertClose(reference.detach(), activation.detach(), 2 * unit, "value");
        AssertClose(block.GlobalScale.grad!, gradient, 4 * unit, "gradient");
    }

    private static void AssertClose(Tensor expected, Tensor actual, double relative, string what)
    {
        var e = expected.to(float64).data<double>().ToArray();
        var a = actual.to(float64).data<double>().ToArray();
        for (int i = 0; i < e.Length; i++)
            Assert.AreEqual(e[i], a[i], relative * Math.Abs(e[i]), $"{what} at g = {-60 + i * 0.5}");
    }
}
