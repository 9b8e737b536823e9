using Anomaly.Vision.Training;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Anomaly.Vision.Training.Tests.Common;

/// <summary><see cref="TorchAdam"/> gives, bit for bit, what TorchSharp's optimizers give.</summary>
[TestClass]
public sealed class TorchAdamTests
{
    [TestMethod]
    [DataRow(false, DisplayName = "AdamW")]
    [DataRow(true, DisplayName = "AdamW with AMSGrad")]
    public void AdamWMatchesTorchSharpsAdamWBitForBit(bool amsgrad)
    {
        using var scope = NewDisposeScope();
        var (reference, held) = (Parameters(), Parameters());
        var torchSharp = optim.AdamW(reference, lr: 0.05, weight_decay: 5e-4, amsgrad: amsgrad);
        using var adam = TorchAdam.AdamW(held, 0.05, 5e-4, amsgrad);
        Steps(reference, torchSharp.zero_grad, () => torchSharp.step(), held, adam);
    }

    [TestMethod]
    public void AdamMatchesTorchSharpsAdamBitForBit()
    {
        using var scope = NewDisposeScope();
        var (reference, held) = (Parameters(), Parameters());
        var torchSharp = optim.Adam(reference, 0.05);
        using var adam = TorchAdam.Adam(held, 0.05);
        Steps(reference, torchSharp.zero_grad, () => torchSharp.step(), held, adam);
    }

    /// <summary>Two parameters, the same values every call.</summary>
    private static Parameter[] Parameters()
    {
        using var generator = new Generator(3, CPU);
        return [new Parameter(randn(new long[] { 7, 5 }, generator: generator)), new Parameter(randn(new long[] { 3 }, generator: generator))];
    }

    /// <summary>Eight steps on the same gradients (of Σ p ⊙ g, so ∂/∂p = g; the second parameter's is zero in steps 3 and 6);
    /// the parameters must stay equal, bit for bit.</summary>
    private static void Steps(Parameter[] reference, Action zeroGrad, Action step, Parameter[] held, TorchAdam adam)
    {
        using var generator = new Generator(11, CPU);
        for (int s = 0; s < 8; s++)
        {
            using var stepScope = NewDisposeScope();
            var gradients = reference.Select(p => randn(p.shape, generator: generator)).ToArray();
            int used = s is 3 or 6 ? 1 : 2;
            zeroGrad();
            Enumerable.Range(0, used).Select(i => (reference[i] * gradients[i]).sum()).Aggregate((a, b) => a + b).backward();
            step();
            adam.ZeroGrad();
            Enumerable.Range(0, used).Select(i => (held[i] * gradients[i]).sum()).Aggregate((a, b) => a + b).backward();
            adam.Step();
            for (int i = 0; i < reference.Length; i++)
                CollectionAssert.AreEqual(reference[i].data<float>().ToArray(), held[i].data<float>().ToArray(), $"step {s}, parameter {i}");
        }
    }
}
