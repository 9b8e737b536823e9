using System.Numerics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Anomaly.Vision.Training;

/// <summary>
/// CFlow's training step for one decoder on the CPU: forward, backward and Adam over one fiber batch, written by hand.
/// </summary>
/// <remarks>
/// <para>
/// Why: a step is small (64 fibers through 8 coupling blocks whose subnets are 2-layer MLPs of a few hundred
/// units), so through LibTorch its time goes to some 300 tensor operations and their autograd bookkeeping, not to
/// arithmetic. Here the step is 8 <see cref="SmallGemm"/> products per block on the calling thread (weights times
/// activations, the weights read in place, never packed), everything between them fused into passes over rows, and
/// no allocation once the buffers have grown. Activations are stored channels-first, [channels, fibers], so that a
/// channel's values for all fibers are one contiguous row: the products read them as B, and the per-channel work
/// (bias, scale, permutation) is whole-row arithmetic. The weight gradients need fibers-first copies of ∂L/∂a and
/// x₁ (transposed per block, a small cost next to the products); W₂ is kept transposed so that its gradient needs
/// the small ∂L/∂a rather than the hidden layer fibers-first. The weights live in C# arrays during training
/// (<see cref="CopyTo"/> writes them back in LibTorch's layout).
/// </para>
/// <para>
/// The gradient is autograd's, derived for <see cref="AllInOneCouplingBlock.Forward"/> (u = (x₁, x₂·eˢ + t),
/// v = u·σ + β, y = P v, s = α·tanh(a₁), (a₁, t) = 0.1·(relu([x₁, c]·W₁ᵀ + b₁)·W₂ᵀ + b₂)) and the loss
/// L = mean(softplus(−log p / C)), log p the fiber's log-likelihood: with ḡ = ∂L/∂log-det per fiber,
/// ∂L/∂σ = Σ ∂L/∂v·u + Σ ḡ / σ, ∂L/∂x₂ = ∂L/∂x₂′·eˢ, ∂L/∂s = ∂L/∂x₂′·x₂·eˢ + ḡ, ∂L/∂a₁ = ∂L/∂s·(α − s²/α), and the
/// subnet's products backwards as usual; x₁ collects ∂L/∂u₁ and the subnet's input gradient. Tests compare it with
/// the LibTorch path (autograd and torch.optim.Adam) step for step.
/// </para>
/// </remarks>
internal sealed class CflowCpuStep
{
    private const int ParametersPerBlock = 6;
    private static readonly double LogSqrtTwoPi = Math.Log(Math.Sqrt(2 * Math.PI));

    private readonly Block[] _blocks;
    private readonly int _channels, _split1, _split2, _conditionSize, _inputs, _hidden, _outputs;
    private readonly float _clamp;
    private readonly FusedAdam _adam;
    private int _capacity;
    // Per step, shared by the blocks: the conditions (fibers-first as gathered, and channels-first), the latent z,
    // the per-fiber log-determinant and its gradient; the gradient flowing backwards and scratch.
    private float[] _conditionRows = [], _condition = [], _z = [], _logDet = [], _logDetGradient = [], _fiberScale = [],
        _gradient = [], _nextGradient = [], _mixed = [], _coefficients = [], _subnetGradient = [], _hiddenGradient = [],
        _fibersFirst = [];

    /// <summary>Copies the flow's weights; the flow is not used again until <see cref="CopyTo"/>.</summary>
    public CflowCpuStep(ConditionalFlow flow, double learningRate)
    {
        var first = flow.Blocks[0];
        _channels = first.Channels;
        _split1 = first.Split1;
        _split2 = first.Split2;
        _conditionSize = first.ConditionSize;
        _inputs = first.SubnetInputs;
        _hidden = first.Hidden;
        _outputs = 2 * first.Split2;
        _clamp = first.Clamp;
        _blocks = flow.Blocks.Select(b => new Block(b)).ToArray();
        _adam = new FusedAdam(_blocks.SelectMany(b => b.Parameters).Select(p => p.Length), learningRate);
    }

    /// <summary>One optimizer step on the fibers <paramref name="fibers"/> of the maps.</summary>
    /// <param name="maps">Feature maps [images, C, positions].</param>
    /// <param name="positions">Positions per map.</param>
    /// <param name="fibers">The step's fibers, each image · positions + position.</param>
    /// <param name="code">Position code [positions, ConditionSize].</param>
    /// <returns>The sum of the fibers' losses.</returns>
    public double Step(ReadOnlySpan<float> maps, int positions, ReadOnlySpan<long> fibers, ReadOnlySpan<float> code)
    {
        int n = fibers.Length, c = _channels, p = _conditionSize;
        EnsureCapacity(n);
        var x = _blocks[0].Input.AsSpan(0, c * n);
        for (int i = 0; i < n; i++)
        {
            long image = fibers[i] / positions;
            int position = (int)(fibers[i] % positions);
            var source = maps.Slice((int)(image * c * positions) + position);
            for (int ch = 0; ch < c; ch++)
                x[ch * n + i] = source[ch * positions];
            code.Slice(position * p, p).CopyTo(_conditionRows.AsSpan(i * p, p));
        }
        Transpose(_conditionRows, n, p, _condition);

        var logDet = _logDet.AsSpan(0, n);
        logDet.Clear();
        for (int k = 0; k < _blocks.Length; k++)
            Forward(_blocks[k], n, k + 1 < _blocks.Length ? _blocks[k + 1].Input : _z);

        // log p per dimension = (log-det − ½‖z‖² − C·log √(2π)) / C; loss = softplus(−log p); ∂L/∂log p = −σ(−log p) / N,
        // so ∂L/∂log-det = ∂L/∂log p / C and ∂L/∂z = −z · ∂L/∂log p / C.
        var z = _z.AsSpan(0, c * n);
        var squares = _fiberScale.AsSpan(0, n);
        squares.Clear();
        for (int ch = 0; ch < c; ch++)
        {
            var row = z.Slice(ch * n, n);
            TensorPrimitives.FusedMultiplyAdd(row, row, squares, squares);
        }
        double lossSum = 0;
        for (int i = 0; i < n; i++)
        {
            double logP = (logDet[i] - 0.5 * squares[i] - c * LogSqrtTwoPi) / c;
            lossSum += logP > 0 ? Math.Log(1 + Math.Exp(-logP)) : -logP + Math.Log(1 + Math.Exp(logP));
            float dLogP = (float)(-1 / (1 + Math.Exp(logP)) / n);
            _logDetGradient[i] = dLogP / c;
            _fiberScale[i] = -dLogP / c;
        }
        var gradient = _gradient.AsSpan(0, c * n);
        for (int ch = 0; ch < c; ch++)
            TensorPrimitives.Multiply(z.Slice(ch * n, n), _fiberScale.AsSpan(0, n), gradient.Slice(ch * n, n));

        _adam.BeginStep();
        for (int k = _blocks.Length - 1; k >= 0; k--)
        {
            Backward(_blocks[k], n, inputGradientNeeded: k > 0);
            (_gradient, _nextGradient) = (_nextGradient, _gradient);
            var parameters = _blocks[k].Parameters;
            var gradients = _blocks[k].Gradients;
            for (int q = 0; q < ParametersPerBlock; q++)
                _adam.Update(k * ParametersPerBlock + q, parameters[q], gradients[q]);
        }
        return lossSum;
    }

    /// <summary>Writes the trained weights into <paramref name="flow"/>'s parameters.</summary>
    public void CopyTo(ConditionalFlow flow)
    {
        using var noGrad = no_grad();
        for (int k = 0; k < _blocks.Length; k++)
        {
            var targets = flow.Blocks[k].Parameters().ToArray();
            for (int q = 0; q < ParametersPerBlock; q++)
            {
                var target = MemoryMarshal.Cast<byte, float>(targets[q].bytes);
                if (q == 2)
                    Transpose(_blocks[k].Weight2Transposed, _hidden, _outputs, target);
                else
                    _blocks[k].Parameters[q].CopyTo(target);
            }
        }
    }

    /// <summary>y = P((x₁, x₂·eˢ + t)·σ + β) into <paramref name="output"/> [C, N]; adds the log-determinants to <see cref="_logDet"/>.</summary>
    private void Forward(Block block, int n, float[] output)
    {
        int c = _channels, s1 = _split1, s2 = _split2, h = _hidden, o = _outputs;
        var input = block.Input.AsSpan(0, c * n);
        var hidden = block.Hidden.AsSpan(0, h * n);
        // h = relu(W₁·[x₁; c] + b₁), W₁'s feature and condition columns taken in place.
        SmallGemm.Multiply(h, n, s1, block.Weight1, _inputs, 1, input, n, hidden, n, accumulate: false);
        SmallGemm.Multiply(h, n, _conditionSize, block.Weight1.AsSpan(s1), _inputs, 1, _condition, n, hidden, n, accumulate: true);
        for (int r = 0; r < h; r++)
            AddBiasRelu(hidden.Slice(r * n, n), block.Bias1[r]);
        // a = 0.1·(W₂·h + b₂); s = α·tanh(a₁), t = a₂.
        var a = _coefficients.AsSpan(0, o * n);
        SmallGemm.Multiply(o, n, h, block.Weight2Transposed, 1, o, hidden, n, a, n, accumulate: false);
        var logDet = _logDet.AsSpan(0, n);
        for (int r = 0; r < o; r++)
        {
            var row = a.Slice(r * n, n);
            TensorPrimitives.Add(row, block.Bias2[r], row);
            TensorPrimitives.Multiply(row, AllInOneCouplingBlock.CouplingScale, row);
        }
        float logSigmaSum = ChannelsFirstCoupling.ScaleActivation(block.GlobalScale, block.Sigma);
        var coupled = block.Coupled.AsSpan(0, s2 * n);   // x₂·eˢ + t
        ChannelsFirstCoupling.AffineCoupling(a, input.Slice(s1 * n, s2 * n), s2, n, _clamp, logSigmaSum,
            block.Log.AsSpan(0, s2 * n), block.Exp.AsSpan(0, s2 * n), coupled, logDet);
        ChannelsFirstCoupling.Mix(input, coupled, s1, c, n, block.Sigma, block.GlobalOffset, block.Permutation, block.Rotation,
            _mixed.AsSpan(0, c * n), output.AsSpan(0, c * n));
    }

    /// <summary>From ∂L/∂y in <see cref="_gradient"/> to the block's parameter gradients and ∂L/∂x in <see cref="_nextGradient"/>.</summary>
    private void Backward(Block block, int n, bool inputGradientNeeded)
    {
        int c = _channels, s1 = _split1, s2 = _split2, h = _hidden, o = _outputs;
        var outputGradient = _gradient.AsSpan(0, c * n);
        var mixedGradient = _mixed.AsSpan(0, c * n);   // ∂L/∂v
        if (block.Rotation is { } rotation)
        {
            SmallGemm.Multiply(c, n, c, rotation, 1, c, outputGradient, n, mixedGradient, n, accumulate: false);
        }
        else
        {
            for (int j = 0; j < c; j++)
                outputGradient.Slice(j * n, n).CopyTo(mixedGradient.Slice(block.Permutation![j] * n, n));
        }

        // σ and β: ∂L/∂σ = Σᵢ ∂L/∂vᵢ·uᵢ + Σᵢ ḡᵢ / σ; σ = 0.1·softplus(g, β = 0.5) has ∂σ/∂g = 0.1·sigmoid(0.5·g)
        // (1 past softplus's threshold). Then ∂L/∂u = ∂L/∂v·σ, in place.
        Span<float> sigma = block.Sigma;
        var input = block.Input.AsSpan(0, c * n);
        var coupled = block.Coupled.AsSpan(0, s2 * n);
        float logDetGradientSum = TensorPrimitives.Sum(_logDetGradient.AsSpan(0, n));
        for (int j = 0; j < c; j++)
        {
            var gv = mixedGradient.Slice(j * n, n);
            var u = j < s1 ? input.Slice(j * n, n) : coupled.Slice((j - s1) * n, n);
            double g = block.GlobalScale[j];
            double slope = 0.5 * g > 20 ? 1 : 1 / (1 + Math.Exp(-0.5 * g));
            block.GlobalScaleGradient[j] = (float)((TensorPrimitives.Dot(gv, u) + logDetGradientSum / sigma[j]) * AllInOneCouplingBlock.CouplingScale * slope);
            block.GlobalOffsetGradient[j] = TensorPrimitives.Sum(gv);
            TensorPrimitives.Multiply(gv, sigma[j], gv);
        }

        // The affine coupling: ∂L/∂x₂ = ∂L/∂x₂′·eˢ, ∂L/∂s = ∂L/∂x₂′·x₂·eˢ + ḡ, ∂L/∂a₁ = 0.1·∂L/∂s·(α − s²/α), ∂L/∂a₂ = 0.1·∂L/∂x₂′.
        var inputGradient = _nextGradient.AsSpan(0, c * n);
        mixedGradient.Slice(0, s1 * n).CopyTo(inputGradient);
        var gCoupled = mixedGradient.Slice(s1 * n, s2 * n);
        var gx2 = inputGradient.Slice(s1 * n, s2 * n);
        var e = block.Exp.AsSpan(0, s2 * n);
        var s = block.Log.AsSpan(0, s2 * n);
        var x2 = input.Slice(s1 * n, s2 * n);
        var ga = _subnetGradient.AsSpan(0, o * n);
        var gaLog = ga.Slice(0, s2 * n);
        TensorPrimitives.Multiply(gCoupled, e, gx2);
        TensorPrimitives.Multiply(gCoupled, AllInOneCouplingBlock.CouplingScale, ga.Slice(s2 * n, s2 * n));
        var logDetGradient = _logDetGradient.AsSpan(0, n);
        for (int r = 0; r < s2; r++)
            LogScaleGradient(gx2.Slice(r * n, n), x2.Slice(r * n, n), logDetGradient, s.Slice(r * n, n), _clamp, gaLog.Slice(r * n, n));

        // The subnet: ∂L/∂b₂ = Σ ∂L/∂a, ∂L/∂W₂ = ∂L/∂a·hᵀ, ∂L/∂h = W₂ᵀ·∂L/∂a masked by relu, ∂L/∂b₁ = Σ ∂L/∂h,
        // ∂L/∂W₁ = ∂L/∂h·[x₁; c]ᵀ, ∂L/∂x₁ += W₁[:, :C₁]ᵀ·∂L/∂h.
        for (int r = 0; r < o; r++)
            block.Bias2Gradient[r] = TensorPrimitives.Sum(ga.Slice(r * n, n));
        var hidden = block.Hidden.AsSpan(0, h * n);
        var fibersFirst = _fibersFirst.AsSpan(0, n * Math.Max(o, s1));
        Transpose(ga, o, n, fibersFirst);
        SmallGemm.Multiply(h, o, n, hidden, n, 1, fibersFirst, o, block.Weight2TransposedGradient, o, accumulate: false);
        var hiddenGradient = _hiddenGradient.AsSpan(0, h * n);
        SmallGemm.Multiply(h, n, o, block.Weight2Transposed, o, 1, ga, n, hiddenGradient, n, accumulate: false);
        ReluGradient(hidden, hiddenGradient);
        for (int r = 0; r < h; r++)
            block.Bias1Gradient[r] = TensorPrimitives.Sum(hiddenGradient.Slice(r * n, n));
        Transpose(input.Slice(0, s1 * n), s1, n, fibersFirst);
        SmallGemm.Multiply(h, s1, n, hiddenGradient, n, 1, fibersFirst, s1, block.Weight1Gradient, _inputs, accumulate: false);
        SmallGemm.Multiply(h, _conditionSize, n, hiddenGradient, n, 1, _conditionRows, _conditionSize, block.Weight1Gradient.AsSpan(s1), _inputs, accumulate: false);
        if (inputGradientNeeded)
            SmallGemm.Multiply(s1, n, h, block.Weight1, 1, _inputs, hiddenGradient, n, inputGradient, n, accumulate: true);
    }

    /// <summary>row = max(row + bias, 0).</summary>
    private static void AddBiasRelu(Span<float> row, float bias)
    {
        var vectors = MemoryMarshal.Cast<float, Vector<float>>(row);
        var b = new Vector<float>(bias);
        for (int i = 0; i < vectors.Length; i++)
            vectors[i] = Vector.Max(vectors[i] + b, Vector<float>.Zero);
        for (int i = vectors.Length * Vector<float>.Count; i < row.Length; i++)
            row[i] = Math.Max(row[i] + bias, 0f);
    }

    /// <summary>Zeroes the gradient where relu's output is not positive.</summary>
    private static void ReluGradient(ReadOnlySpan<float> output, Span<float> gradient)
    {
        var outputs = MemoryMarshal.Cast<float, Vector<float>>(output);
        var gradients = MemoryMarshal.Cast<float, Vector<float>>(gradient);
        for (int i = 0; i < gradients.Length; i++)
            gradients[i] = Vector.ConditionalSelect(Vector.GreaterThan(outputs[i], Vector<float>.Zero), gradients[i], Vector<float>.Zero);
        for (int i = gradients.Length * Vector<float>.Count; i < gradient.Length; i++)
            gradient[i] = output[i] > 0 ? gradient[i] : 0f;
    }

    /// <summary>∂L/∂a₁ = 0.1·(∂L/∂x₂·x₂ + ḡ)·(α − s²/α), ∂L/∂x₂ already holding ∂L/∂x₂′·eˢ.</summary>
    private static void LogScaleGradient(ReadOnlySpan<float> gx2, ReadOnlySpan<float> x2, ReadOnlySpan<float> logDetGradient,
        ReadOnlySpan<float> s, float clamp, Span<float> result)
    {
        float scale = AllInOneCouplingBlock.CouplingScale, inverseClamp = 1 / clamp;
        var vg = MemoryMarshal.Cast<float, Vector<float>>(gx2);
        var vx = MemoryMarshal.Cast<float, Vector<float>>(x2);
        var vl = MemoryMarshal.Cast<float, Vector<float>>(logDetGradient);
        var vs = MemoryMarshal.Cast<float, Vector<float>>(s);
        var vr = MemoryMarshal.Cast<float, Vector<float>>(result);
        var vClamp = new Vector<float>(clamp);
        for (int i = 0; i < vr.Length; i++)
            vr[i] = (vg[i] * vx[i] + vl[i]) * scale * (vClamp - vs[i] * vs[i] * inverseClamp);
        for (int i = vr.Length * Vector<float>.Count; i < result.Length; i++)
            result[i] = (gx2[i] * x2[i] + logDetGradient[i]) * scale * (clamp - s[i] * s[i] * inverseClamp);
    }

    /// <summary>destination [columns, rows] = sourceᵀ for source [rows, columns].</summary>
    private static void Transpose(ReadOnlySpan<float> source, int rows, int columns, Span<float> destination)
    {
        const int block = 16;
        for (int r0 = 0; r0 < rows; r0 += block)
        {
            int r1 = Math.Min(rows, r0 + block);
            for (int c0 = 0; c0 < columns; c0 += block)
            {
                int c1 = Math.Min(columns, c0 + block);
                for (int r = r0; r < r1; r++)
                {
                    for (int col = c0; col < c1; col++)
                        destination[col * rows + r] = source[r * columns + col];
                }
            }
        }
    }

    private void EnsureCapacity(int n)
    {
        if (n <= _capacity)
            return;
        _capacity = n;
        int c = _channels;
        _conditionRows = new float[n * _conditionSize];
        _condition = new float[n * _conditionSize];
        _z = new float[c * n];
        _logDet = new float[n];
        _logDetGradient = new float[n];
        _fiberScale = new float[n];
        _gradient = new float[c * n];
        _nextGradient = new float[c * n];
        _mixed = new float[c * n];
        _coefficients = new float[_outputs * n];
        _subnetGradient = new float[_outputs * n];
        _hiddenGradient = new float[_hidden * n];
        _fibersFirst = new float[Math.Max(_outputs, _split1) * n];
        foreach (var block in _blocks)
            block.EnsureCapacity(n, c, _split2, _hidden);
    }

    /// <summary>One coupling block's weights, gradients and the activations of the current step (channels-first, [rows, N]).</summary>
    private sealed class Block
    {
        public Block(AllInOneCouplingBlock block)
        {
            Weight1 = ChannelsFirstCoupling.Values(block.Weight1);
            Bias1 = ChannelsFirstCoupling.Values(block.Bias1);
            Weight2Transposed = new float[block.Hidden * 2 * block.Split2];
            Transpose(ChannelsFirstCoupling.Values(block.Weight2), 2 * block.Split2, block.Hidden, Weight2Transposed);
            Bias2 = ChannelsFirstCoupling.Values(block.Bias2);
            GlobalScale = ChannelsFirstCoupling.Values(block.GlobalScale);
            GlobalOffset = ChannelsFirstCoupling.Values(block.GlobalOffset);
            Parameters = [Weight1, Bias1, Weight2Transposed, Bias2, GlobalScale, GlobalOffset];
            Gradients = Parameters.Select(p => new float[p.Length]).ToArray();
            Permutation = block.Permutation is { } permutation ? permutation.data<long>().Select(i => (int)i).ToArray() : null;
            Rotation = block.Rotation is { } rotation ? ChannelsFirstCoupling.Values(rotation) : null;
            Sigma = new float[GlobalScale.Length];
        }

        public float[] Weight1 { get; }         // [Hidden, SubnetInputs]
        public float[] Bias1 { get; }           // [Hidden]
        public float[] Weight2Transposed { get; }   // W₂ᵀ [Hidden, 2·Split2], so that ∂L/∂W₂ needs ∂L/∂a, not h, fibers-first
        public float[] Bias2 { get; }           // [2·Split2]
        public float[] GlobalScale { get; }     // [C], before the softplus
        public float[] GlobalOffset { get; }    // [C]
        public float[][] Parameters { get; }    // the six above, in AllInOneCouplingBlock.Parameters() order
        public float[][] Gradients { get; }
        public float[] Weight1Gradient => Gradients[0];
        public float[] Bias1Gradient => Gradients[1];
        public float[] Weight2TransposedGradient => Gradients[2];
        public float[] Bias2Gradient => Gradients[3];
        public float[] GlobalScaleGradient => Gradients[4];
        public float[] GlobalOffsetGradient => Gradients[5];
        public int[]? Permutation { get; }      // row j of y is row perm[j] of v
        public float[]? Rotation { get; }       // [C, C]: y = R·v
        public float[] Sigma { get; }           // σ of the current step

        public float[] Input { get; private set; } = [];     // x [C, N]
        public float[] Hidden { get; private set; } = [];    // relu output [Hidden, N]
        public float[] Log { get; private set; } = [];       // s = α·tanh(a₁) [Split2, N]
        public float[] Exp { get; private set; } = [];       // eˢ [Split2, N]
        public float[] Coupled { get; private set; } = [];   // x₂·eˢ + t [Split2, N]

        public void EnsureCapacity(int n, int channels, int split2, int hidden)
        {
            Input = new float[channels * n];
            Hidden = new float[hidden * n];
            Log = new float[split2 * n];
            Exp = new float[split2 * n];
            Coupled = new float[split2 * n];
        }
    }
}
