using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Parameter = TorchSharp.Modules.Parameter;

namespace Anomaly.Vision.Training;

/// <summary>
/// CFlow's decoder for one backbone layer: a sequence of <see cref="AllInOneCouplingBlock"/>s, all conditioned on
/// the same position code, mapping a feature fiber x to a latent z with a standard normal prior.
/// </summary>
internal sealed class ConditionalFlow : IDisposable
{
    private static readonly double LogSqrtTwoPi = Math.Log(Math.Sqrt(2 * Math.PI));

    /// <summary>Creates a flow from existing blocks (taken over).</summary>
    /// <param name="blocks">The blocks, applied in order.</param>
    public ConditionalFlow(IReadOnlyList<AllInOneCouplingBlock> blocks)
    {
        if (blocks.Count == 0)
            throw new ArgumentException("A flow needs at least one coupling block.", nameof(blocks));
        Blocks = blocks.ToArray();
        Channels = Blocks[0].Channels;
        ConditionSize = Blocks[0].ConditionSize;
    }

    /// <summary>Creates a flow of freshly initialised blocks.</summary>
    /// <param name="channels">Feature channels C.</param>
    /// <param name="conditionSize">Condition vector length.</param>
    /// <param name="couplingBlocks">Number of blocks.</param>
    /// <param name="clamp">Affine clamping α.</param>
    /// <param name="permuteSoft">Random rotations instead of permutations.</param>
    /// <param name="generator">CPU random generator for the initial weights.</param>
    /// <param name="dtype">Weight type.</param>
    /// <param name="device">Weight device.</param>
    public static ConditionalFlow Create(int channels, int conditionSize, int couplingBlocks, float clamp, bool permuteSoft,
        Generator generator, ScalarType dtype, Device device)
    {
        var blocks = new List<AllInOneCouplingBlock>(couplingBlocks);
        for (int k = 0; k < couplingBlocks; k++)
            blocks.Add(new AllInOneCouplingBlock(channels, conditionSize, clamp, permuteSoft, generator, dtype, device));
        return new ConditionalFlow(blocks);
    }

    /// <summary>The blocks, in the order they are applied.</summary>
    public IReadOnlyList<AllInOneCouplingBlock> Blocks { get; }

    /// <summary>Feature channels C.</summary>
    public int Channels { get; }

    /// <summary>Condition vector length.</summary>
    public int ConditionSize { get; }

    /// <summary>All trainable parameters, block by block.</summary>
    public IEnumerable<Parameter> Parameters() => Blocks.SelectMany(b => b.Parameters());

    /// <summary>Every block's <see cref="AllInOneCouplingBlock.ConditionHidden"/> of <paramref name="condition"/>.</summary>
    /// <param name="condition">[..., ConditionSize].</param>
    public Tensor[] ConditionHidden(Tensor condition) => Blocks.Select(b => b.ConditionHidden(condition)).ToArray();

    /// <summary>x → z with the summed log-determinant.</summary>
    /// <param name="x">[..., C].</param>
    /// <param name="conditionHidden">One entry per block, from <see cref="ConditionHidden"/>.</param>
    public (Tensor Z, Tensor LogDet) Forward(Tensor x, IReadOnlyList<Tensor> conditionHidden)
    {
        Tensor? logDet = null;
        for (int k = 0; k < Blocks.Count; k++)
        {
            var (y, j) = Blocks[k].Forward(x, conditionHidden[k]);
            x = y;
            logDet = logDet is null ? j : logDet.Add(j);
        }
        return (x, logDet!);
    }

    /// <summary>z → x, the inverse of <see cref="Forward"/>.</summary>
    /// <param name="z">[..., C].</param>
    /// <param name="conditionHidden">One entry per block, from <see cref="ConditionHidden"/>.</param>
    public Tensor Inverse(Tensor z, IReadOnlyList<Tensor> conditionHidden)
    {
        for (int k = Blocks.Count - 1; k >= 0; k--)
            z = Blocks[k].Inverse(z, conditionHidden[k]);
        return z;
    }

    /// <summary>
    /// Log-likelihood per dimension of each fiber: (C·(−log √(2π)) − ½‖z‖² + log|det J|) / C.
    /// </summary>
    /// <param name="x">[..., C].</param>
    /// <param name="conditionHidden">One entry per block, from <see cref="ConditionHidden"/>.</param>
    /// <returns>[...].</returns>
    public Tensor LogLikelihood(Tensor x, IReadOnlyList<Tensor> conditionHidden)
    {
        var (z, logDet) = Forward(x, conditionHidden);
        var logp = (logDet - z.Square().sum(-1).Mul(0.5)).Sub(Channels * LogSqrtTwoPi);
        return logp.Div((long)Channels);
    }

    /// <summary>Training loss of a fiber batch: mean(−log σ(log-likelihood per dimension)); also returns the per-fiber losses.</summary>
    /// <param name="x">[N, C].</param>
    /// <param name="condition">[N, ConditionSize].</param>
    public (Tensor Mean, Tensor PerFiber) Loss(Tensor x, Tensor condition)
    {
        var logProb = LogLikelihood(x, ConditionHidden(condition));
        var perFiber = -F.logsigmoid(logProb);
        return (perFiber.mean(), perFiber);
    }

    /// <summary>Prepares the flow for inference on a fixed grid; see <see cref="AllInOneCouplingBlock.Freeze"/>.</summary>
    /// <param name="condition">Conditions of the grid positions, [positions, ConditionSize].</param>
    public FrozenConditionalFlow Freeze(Tensor condition) =>
        new(Blocks.Select(b => b.Freeze(condition)).ToArray(), Channels);

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var block in Blocks)
            block.Dispose();
    }
}

/// <summary>A <see cref="ConditionalFlow"/> prepared for inference over a fixed grid of positions; thread-safe.</summary>
internal sealed class FrozenConditionalFlow : IDisposable
{
    private static readonly double LogSqrtTwoPi = Math.Log(Math.Sqrt(2 * Math.PI));
    private readonly FrozenCouplingBlock[] _blocks;
    private readonly int _channels;

    internal FrozenConditionalFlow(FrozenCouplingBlock[] blocks, int channels)
    {
        _blocks = blocks;
        _channels = channels;
    }

    /// <summary>Log-likelihood per dimension of every fiber; call under no_grad.</summary>
    /// <param name="x">[C, images, positions], contiguous (channels first).</param>
    /// <returns>[images, positions].</returns>
    public Tensor LogLikelihood(Tensor x)
    {
        var logDet = zeros(x.shape[1], x.shape[2], dtype: x.dtype, device: x.device);
        foreach (var block in _blocks)
            x = block.Forward(x, logDet);
        // (logdet − ½‖z‖² − C·log √(2π)) / C
        logDet.sub_(x.Square().sum(0, keepdim: false).MulInPlace(0.5)).SubInPlace(_channels * LogSqrtTwoPi).DivInPlace((long)_channels);
        return logDet;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var block in _blocks)
            block.Dispose();
    }
}
