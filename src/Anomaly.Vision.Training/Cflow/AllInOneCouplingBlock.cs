using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Parameter = TorchSharp.Modules.Parameter;

namespace Anomaly.Vision.Training;

/// <summary>
/// One conditional invertible block of CFlow's decoder, computing what FrEIA's <c>AllInOneBlock</c> computes
/// with a SOFTPLUS global affine and no learned Householder reflections:
/// <list type="number">
/// <item>split the C channels into x₁ (the first C − C/2) and x₂ (the last C/2);</item>
/// <item>a = 0.1 · subnet(cat(x₁, c)) with subnet = Linear(n, 2n) → ReLU → Linear(2n, 2·C/2), n = |x₁| + |c|;</item>
/// <item>s = α·tanh(a[:C/2]), x₂' = x₂·exp(s) + a[C/2:], log-det += Σ s;</item>
/// <item>y = P((x₁, x₂')·σ + β) with σ = 0.1·softplus_{β=0.5}(g) per channel, log-det += Σ log σ,
/// and P a fixed random permutation (or, with soft permutation, a fixed random rotation).</item>
/// </list>
/// Channels are the last dimension: inputs are [N, C] fibers or [B, N, C] batches of fibers.
/// The condition enters through <see cref="ConditionHidden"/>, the condition's share of the subnet's first
/// layer (including its bias), so that it may be computed once per position and reused.
/// </summary>
internal sealed class AllInOneCouplingBlock : IDisposable
{
    /// <summary>The factor the subnet's output is scaled by before use.</summary>
    public const float CouplingScale = 0.1f;

    private Tensor? _permutation;          // long [C]: y[i] = v[perm[i]]   (hard permutation)
    private Tensor? _inversePermutation;   // long [C]
    private Tensor? _rotation;             // [C, C]: y = v·Rᵀ                (soft permutation)

    /// <summary>Creates a block with freshly initialised weights drawn from <paramref name="generator"/>.</summary>
    /// <param name="channels">Number of feature channels C (at least 2).</param>
    /// <param name="conditionSize">Length of the condition vector.</param>
    /// <param name="clamp">Affine clamping α.</param>
    /// <param name="permuteSoft">Use a random rotation instead of a random permutation.</param>
    /// <param name="generator">CPU random generator for the initial weights and the permutation.</param>
    /// <param name="dtype">Floating-point type of the weights.</param>
    /// <param name="device">Device of the weights.</param>
    public AllInOneCouplingBlock(int channels, int conditionSize, float clamp, bool permuteSoft, Generator generator,
        ScalarType dtype, Device device)
    {
        if (channels < 2)
            throw new ArgumentException($"A coupling block needs at least 2 channels (got {channels}).", nameof(channels));
        if (conditionSize < 0)
            throw new ArgumentException($"The condition size must not be negative (got {conditionSize}).", nameof(conditionSize));
        Channels = channels;
        ConditionSize = conditionSize;
        Clamp = clamp;
        PermuteSoft = permuteSoft;

        using var scope = NewDisposeScope();
        int inputs = SubnetInputs, hidden = Hidden, outputs = 2 * Split2;
        // PyTorch's Linear initialisation: weight and bias uniform in ±1/sqrt(fan_in).
        var w1 = Uniform(new long[] { hidden, inputs }, 1.0 / Math.Sqrt(inputs), generator);
        var b1 = Uniform(new long[] { hidden }, 1.0 / Math.Sqrt(inputs), generator);
        var w2 = Uniform(new long[] { outputs, hidden }, 1.0 / Math.Sqrt(hidden), generator);
        var b2 = Uniform(new long[] { outputs }, 1.0 / Math.Sqrt(hidden), generator);
        using var initialScale = InitialGlobalScale.ToScalar();
        var g = full(new long[] { channels }, initialScale, float64);
        var offset = zeros(new long[] { channels }, float64);
        Tensor permutation;
        if (permuteSoft)
        {
            permutation = RandomRotation(channels, generator);
        }
        else
        {
            permutation = randperm(channels, generator: generator, dtype: int64);
        }
        Weight1 = MakeParameter(w1, dtype, device);
        Bias1 = MakeParameter(b1, dtype, device);
        Weight2 = MakeParameter(w2, dtype, device);
        Bias2 = MakeParameter(b2, dtype, device);
        GlobalScale = MakeParameter(g, dtype, device);
        GlobalOffset = MakeParameter(offset, dtype, device);
        SetPermutation(permutation, dtype, device);
    }

    /// <summary>Creates a block from stored weights (copied); shapes must already be checked.</summary>
    public AllInOneCouplingBlock(int channels, int conditionSize, float clamp, bool permuteSoft,
        Tensor weight1, Tensor bias1, Tensor weight2, Tensor bias2, Tensor globalScale, Tensor globalOffset,
        Tensor permutation, ScalarType dtype, Device device)
    {
        Channels = channels;
        ConditionSize = conditionSize;
        Clamp = clamp;
        PermuteSoft = permuteSoft;
        Weight1 = MakeParameter(weight1, dtype, device);
        Bias1 = MakeParameter(bias1, dtype, device);
        Weight2 = MakeParameter(weight2, dtype, device);
        Bias2 = MakeParameter(bias2, dtype, device);
        GlobalScale = MakeParameter(globalScale, dtype, device);
        GlobalOffset = MakeParameter(globalOffset, dtype, device);
        SetPermutation(permutation, dtype, device);
    }

    /// <summary>The pre-activation global scale g that gives σ = 1: 2·log(exp(0.5·10·1) − 1).</summary>
    public static double InitialGlobalScale { get; } = 2.0 * Math.Log(Math.Exp(0.5 * 10.0 * 1.0) - 1.0);

    /// <summary>Number of channels C.</summary>
    public int Channels { get; }

    /// <summary>Length of the condition vector.</summary>
    public int ConditionSize { get; }

    /// <summary>Affine clamping α.</summary>
    public float Clamp { get; }

    /// <summary>Whether the channel mix is a random rotation rather than a permutation.</summary>
    public bool PermuteSoft { get; }

    /// <summary>Channels passed through unchanged and fed to the subnet: C − C/2.</summary>
    public int Split1 => Channels - Channels / 2;

    /// <summary>Channels transformed by the affine coupling: C/2.</summary>
    public int Split2 => Channels / 2;

    /// <summary>Inputs of the subnet: <see cref="Split1"/> + <see cref="ConditionSize"/>.</summary>
    public int SubnetInputs => Split1 + ConditionSize;

    /// <summary>Hidden width of the subnet: 2 · <see cref="SubnetInputs"/>.</summary>
    public int Hidden => 2 * SubnetInputs;

    /// <summary>First subnet layer's weight, [Hidden, Split1 + ConditionSize] (feature columns first).</summary>
    public Parameter Weight1 { get; }

    /// <summary>First subnet layer's bias, [Hidden].</summary>
    public Parameter Bias1 { get; }

    /// <summary>Second subnet layer's weight, [2·Split2, Hidden].</summary>
    public Parameter Weight2 { get; }

    /// <summary>Second subnet layer's bias, [2·Split2].</summary>
    public Parameter Bias2 { get; }

    /// <summary>Pre-activation global scale g, [C].</summary>
    public Parameter GlobalScale { get; }

    /// <summary>Global offset, [C].</summary>
    public Parameter GlobalOffset { get; }

    /// <summary>The hard permutation's indices (y[i] = v[perm[i]]), [C] int64; null for a soft permutation.</summary>
    public Tensor? Permutation => _permutation;

    /// <summary>The soft permutation's rotation R (y = R·v), [C, C]; null for a hard permutation.</summary>
    public Tensor? Rotation => _rotation;

    /// <summary>The trainable parameters.</summary>
    public IEnumerable<Parameter> Parameters()
    {
        yield return Weight1;
        yield return Bias1;
        yield return Weight2;
        yield return Bias2;
        yield return GlobalScale;
        yield return GlobalOffset;
    }

    /// <summary>The condition's share of the subnet's first layer, bias included: c·W₁[:, Split1:]ᵀ + b₁.</summary>
    /// <param name="condition">Condition vectors [..., ConditionSize].</param>
    /// <returns>[..., Hidden].</returns>
    public Tensor ConditionHidden(Tensor condition) =>
        F.linear(condition, Weight1.narrow(1, Split1, ConditionSize), Bias1);

    /// <summary>Maps x to y and returns the log-determinant of the Jacobian per fiber.</summary>
    /// <param name="x">Input [..., C].</param>
    /// <param name="conditionHidden">From <see cref="ConditionHidden"/>, broadcastable to [..., Hidden].</param>
    /// <returns>y [..., C] and log|det ∂y/∂x| [...].</returns>
    public (Tensor Y, Tensor LogDet) Forward(Tensor x, Tensor conditionHidden)
    {
        var x1 = x.narrow(-1, 0, Split1);
        var x2 = x.narrow(-1, Split1, Split2);
        var (s, t) = Coefficients(x1, conditionHidden);
        var transformed = (x2 * s.exp()).Add(t);
        var logDet = s.sum(-1);
        var u = cat(new[] { x1, transformed }, -1);
        var scale = GlobalScaleActivation();
        var y = Permute((u * scale).Add(GlobalOffset));
        return (y, logDet.Add(scale.log().sum()));
    }

    /// <summary>Maps y back to x (the inverse of <see cref="Forward"/>).</summary>
    /// <param name="y">Output [..., C].</param>
    /// <param name="conditionHidden">From <see cref="ConditionHidden"/>, broadcastable to [..., Hidden].</param>
    /// <returns>x [..., C].</returns>
    public Tensor Inverse(Tensor y, Tensor conditionHidden)
    {
        var scale = GlobalScaleActivation();
        var u = (Unpermute(y) - GlobalOffset) / scale;
        var u1 = u.narrow(-1, 0, Split1);
        var u2 = u.narrow(-1, Split1, Split2);
        var (s, t) = Coefficients(u1, conditionHidden);
        var x2 = (u2 - t) * (-s).exp();
        return cat(new[] { u1, x2 }, -1);
    }

    /// <summary>σ = 0.1 · softplus(g) with β = 0.5, per channel.</summary>
    /// <remarks>
    /// <c>F.softplus(g, 0.5, 20)</c>, (1/β)·log(1 + exp(β·g)) or g where β·g &gt; 20, written with <see cref="ScalarMath"/>
    /// because F.softplus makes its Scalars on the fly; LibTorch's fused kernel rounds a few values differently in the last
    /// place. The exponent is clamped at the threshold so that the unused branch has a finite gradient. Only the LibTorch
    /// paths (training through LibTorch, scoring off the CPU) use it; the CPU kernels compute σ in C#.
    /// </remarks>
    public Tensor GlobalScaleActivation()
    {
        const double beta = 0.5, threshold = 20.0;
        var scaled = GlobalScale.Mul(beta);
        var soft = scaled.ClampMax(threshold).exp().log1p().Div(beta);
        return where(scaled.Greater(threshold), GlobalScale, soft).Mul(0.1);
    }

    /// <summary>
    /// A copy of this block for inference with a fixed grid of conditions: weights pre-transposed and
    /// pre-scaled, the condition's share of the subnet computed once, and the computation done in place.
    /// </summary>
    /// <param name="condition">The conditions of the grid positions, [positions, ConditionSize].</param>
    public FrozenCouplingBlock Freeze(Tensor condition)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long positions = condition.shape[0];
        return new FrozenCouplingBlock(
            Split1, Split2, Clamp,
            Weight1.narrow(1, 0, Split1).contiguous(),
            ConditionHidden(condition).t().reshape(Hidden, 1, positions),
            Weight2.Mul(CouplingScale).contiguous(),
            Bias2.Mul(CouplingScale).reshape(2 * Split2, 1, 1),
            GlobalScaleActivation().reshape(Channels, 1, 1),
            GlobalScaleActivation().log().sum().to(ScalarType.Float64).item<double>(),
            GlobalOffset.detach().reshape(Channels, 1, 1).clone(),
            _permutation?.clone(),
            _rotation?.contiguous().clone());
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Weight1.Dispose();
        Bias1.Dispose();
        Weight2.Dispose();
        Bias2.Dispose();
        GlobalScale.Dispose();
        GlobalOffset.Dispose();
        _permutation?.Dispose();
        _inversePermutation?.Dispose();
        _rotation?.Dispose();
    }

    private (Tensor S, Tensor T) Coefficients(Tensor x1, Tensor conditionHidden)
    {
        var hidden = F.relu(F.linear(x1, Weight1.narrow(1, 0, Split1)).Add(conditionHidden));
        var a = F.linear(hidden, Weight2, Bias2).Mul(CouplingScale);
        var s = a.narrow(-1, 0, Split2).tanh().Mul(Clamp);
        var t = a.narrow(-1, Split2, Split2);
        return (s, t);
    }

    private Tensor Permute(Tensor v) =>
        _rotation is null ? v.index_select(-1, _permutation!) : F.linear(v, _rotation);

    private Tensor Unpermute(Tensor y) =>
        _rotation is null ? y.index_select(-1, _inversePermutation!) : F.linear(y, _rotation.t());

    private void SetPermutation(Tensor permutation, ScalarType dtype, Device device)
    {
        if (PermuteSoft)
        {
            _rotation = permutation.to(dtype, device).detach().contiguous().DetachFromDisposeScope();
            return;
        }
        var indices = permutation.to(int64, CPU);
        var inverse = empty_like(indices);
        inverse.index_put_(tensor(Enumerable.Range(0, Channels).Select(i => (long)i).ToArray()), indices);
        _permutation = indices.to(device).DetachFromDisposeScope();
        _inversePermutation = inverse.to(device).DetachFromDisposeScope();
    }

    private static Tensor Uniform(long[] shape, double bound, Generator generator) =>
        rand(shape, dtype: float64, generator: generator).Mul(2 * bound).Sub(bound);

    /// <summary>A random rotation (orthogonal, determinant +1): Q of the QR decomposition of a Gaussian matrix,
    /// with column signs fixed by R's diagonal so that it is uniformly distributed, and one column flipped when
    /// the determinant is negative.</summary>
    private static Tensor RandomRotation(int n, Generator generator)
    {
        var gaussian = randn(new long[] { n, n }, dtype: float64, generator: generator);
        var (q, r) = linalg.qr(gaussian);
        var signs = r.diagonal().sign();
        using var zero = 0.ToScalar();
        signs = where(signs.eq(zero), ones_like(signs), signs);
        q = q * signs.unsqueeze(0);
        if (linalg.det(q).item<double>() < 0)
            q[TensorIndex.Colon, 0] = -q[TensorIndex.Colon, 0];
        return q;
    }

    private static Parameter MakeParameter(Tensor value, ScalarType dtype, Device device)
    {
        var data = value.to(dtype, device).detach().clone();
        var parameter = new Parameter(data, requires_grad: true);
        parameter.DetachFromDisposeScope();
        return parameter;
    }
}

/// <summary>
/// An <see cref="AllInOneCouplingBlock"/> prepared for fast, allocation-light inference over a fixed grid of
/// positions; see <see cref="AllInOneCouplingBlock.Freeze"/>. It works channels-first, on [C, images, positions]
/// tensors, so that splitting, concatenating and permuting channels move whole rows. Immutable, so safe to use
/// from several threads.
/// </summary>
internal sealed class FrozenCouplingBlock : IDisposable
{
    private readonly int _split1, _split2;
    private readonly float _clamp;
    private readonly Tensor _weight1Features;   // [Hidden, Split1]
    private readonly Tensor _conditionHidden;   // [Hidden, 1, positions]
    private readonly Tensor _weight2;           // [2·Split2, Hidden], times the coupling scale
    private readonly Tensor _bias2;             // [2·Split2, 1, 1], times the coupling scale
    private readonly Tensor _scale;             // [C, 1, 1]
    private readonly double _logScaleSum;       // Σ log σ
    private readonly Tensor _offset;            // [C, 1, 1]
    private readonly Tensor? _permutation;      // [C] or null
    private readonly Tensor? _rotation;         // [C, C] or null

    internal FrozenCouplingBlock(int split1, int split2, float clamp, Tensor weight1Features, Tensor conditionHidden,
        Tensor weight2, Tensor bias2, Tensor scale, double logScaleSum, Tensor offset, Tensor? permutation, Tensor? rotation)
    {
        _logScaleSum = logScaleSum;
        _split1 = split1;
        _split2 = split2;
        _clamp = clamp;
        _weight1Features = weight1Features.contiguous().DetachFromDisposeScope();
        _conditionHidden = conditionHidden.contiguous().DetachFromDisposeScope();
        _weight2 = weight2.contiguous().DetachFromDisposeScope();
        _bias2 = bias2.contiguous().DetachFromDisposeScope();
        _scale = scale.contiguous().DetachFromDisposeScope();
        _offset = offset.contiguous().DetachFromDisposeScope();
        _permutation = permutation?.DetachFromDisposeScope();
        _rotation = rotation?.DetachFromDisposeScope();
    }

    /// <summary>Maps x to y and adds each fiber's log-determinant to <paramref name="logDet"/>; call under no_grad.</summary>
    /// <param name="x">[C, images, positions], contiguous.</param>
    /// <param name="logDet">[images, positions], updated in place.</param>
    /// <returns>y, [C, images, positions], contiguous.</returns>
    public Tensor Forward(Tensor x, Tensor logDet)
    {
        long images = x.shape[1], positions = x.shape[2];
        var x1 = x.narrow(0, 0, _split1);
        var x2 = x.narrow(0, _split1, _split2);
        var hidden = _weight1Features.mm(x1.reshape(_split1, images * positions)).view(-1, images, positions);
        hidden.AddInPlace(_conditionHidden).relu_();
        var a = _weight2.mm(hidden.view(-1, images * positions)).view(-1, images, positions);
        a.AddInPlace(_bias2);
        var s = a.narrow(0, 0, _split2);
        s.tanh_().MulInPlace(_clamp);
        logDet.AddInPlace(s.sum(0, keepdim: false)).AddInPlace(_logScaleSum);
        s.exp_();
        var transformed = x2 * s;
        transformed.AddInPlace(a.narrow(0, _split2, _split2));
        var u = cat(new[] { x1, transformed }, 0);
        u.mul_(_scale).AddInPlace(_offset);
        return _rotation is null
            ? u.index_select(0, _permutation!)
            : _rotation.mm(u.view(u.shape[0], images * positions)).view(-1, images, positions);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _weight1Features.Dispose();
        _conditionHidden.Dispose();
        _weight2.Dispose();
        _bias2.Dispose();
        _scale.Dispose();
        _offset.Dispose();
        _permutation?.Dispose();
        _rotation?.Dispose();
    }
}
