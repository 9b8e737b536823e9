using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Anomaly.Vision.Training;

/// <summary>
/// One decoder's log-likelihoods over its fixed grid of positions on the CPU, in C#; thread-safe.
/// </summary>
/// <remarks>
/// Design: as <see cref="CflowCpuStep"/> does for training, this replaces LibTorch's many small operations and its
/// CPU GEMM with <see cref="SmallGemm"/> products over channels-first activations. Every fiber goes through the flow
/// on its own, so the work is cut into chunks of up to <see cref="ColumnsPerChunk"/> positions of one image, run in
/// parallel, each through all blocks with its own buffers (a few hundred KiB, so a chunk's activations stay in the
/// inner caches). What depends on the grid only is computed once: each block's condition share of the subnet's first
/// layer, W₁[:, C₁:]·c + b₁ per position; the subnet's output scale 0.1 is folded into W₂ and b₂.
/// </remarks>
internal sealed class CflowCpuInference
{
    private const int ColumnsPerChunk = 256;
    private static readonly double LogSqrtTwoPi = Math.Log(Math.Sqrt(2 * Math.PI));

    private readonly Block[] _blocks;
    private readonly int _channels, _split1, _split2, _inputs, _hidden, _outputs, _positions;
    private readonly float _clamp;

    /// <summary>Copies the flow's weights and precomputes the grid's condition terms.</summary>
    /// <param name="flow">The trained decoder.</param>
    /// <param name="positionCode">The grid's position code, [ConditionSize, positions] row-major.</param>
    /// <param name="positions">Positions of the grid.</param>
    public CflowCpuInference(ConditionalFlow flow, float[] positionCode, int positions)
    {
        var first = flow.Blocks[0];
        _channels = first.Channels;
        _split1 = first.Split1;
        _split2 = first.Split2;
        _inputs = first.SubnetInputs;
        _hidden = first.Hidden;
        _outputs = 2 * first.Split2;
        _clamp = first.Clamp;
        _positions = positions;
        _blocks = flow.Blocks.Select(b => new Block(b, positionCode, positions)).ToArray();
    }

    /// <summary>Log-likelihood per dimension of every fiber of <paramref name="count"/> maps.</summary>
    /// <param name="maps">[count, C, positions], row-major, from <paramref name="offset"/>.</param>
    /// <param name="offset">Index of the first map's first value.</param>
    /// <param name="count">Number of maps.</param>
    /// <param name="destination">[count, positions], from <paramref name="destinationOffset"/>.</param>
    /// <param name="destinationOffset">Index of the first map's first value.</param>
    public void LogLikelihoods(float[] maps, int offset, int count, float[] destination, int destinationOffset)
    {
        int chunksPerImage = (_positions + ColumnsPerChunk - 1) / ColumnsPerChunk;
        Parallel.For(
            0,
            count * chunksPerImage,
            new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            () => new Buffers(_channels, _split2, _hidden, _outputs, ColumnsPerChunk),
            (chunk, _, buffers) =>
            {
                int image = chunk / chunksPerImage;
                int start = chunk % chunksPerImage * ColumnsPerChunk;
                int columns = Math.Min(ColumnsPerChunk, _positions - start);
                var map = maps.AsSpan(offset + image * _channels * _positions, _channels * _positions);
                LogLikelihoods(map, start, columns, buffers, destination.AsSpan(destinationOffset + image * _positions + start, columns));
                return buffers;
            },
            _ => { });
    }

    /// <summary>Positions start … start + n − 1 of one map through every block.</summary>
    private void LogLikelihoods(ReadOnlySpan<float> map, int start, int n, Buffers buffers, Span<float> destination)
    {
        int c = _channels;
        var x = buffers.Input.AsSpan(0, c * n);
        for (int ch = 0; ch < c; ch++)
            map.Slice(ch * _positions + start, n).CopyTo(x.Slice(ch * n, n));
        var logDet = buffers.LogDet.AsSpan(0, n);
        logDet.Clear();
        foreach (var block in _blocks)
        {
            Forward(block, start, n, buffers, logDet);
            (buffers.Input, buffers.Output) = (buffers.Output, buffers.Input);
        }
        // (log-det − ½‖z‖² − C·log √(2π)) / C
        var z = buffers.Input.AsSpan(0, c * n);
        var squares = buffers.Squares.AsSpan(0, n);
        squares.Clear();
        for (int ch = 0; ch < c; ch++)
        {
            var row = z.Slice(ch * n, n);
            TensorPrimitives.FusedMultiplyAdd(row, row, squares, squares);
        }
        TensorPrimitives.MultiplyAdd(squares, -0.5f, logDet, destination);
        TensorPrimitives.Add(destination, (float)(-c * LogSqrtTwoPi), destination);
        TensorPrimitives.Divide(destination, c, destination);
    }

    /// <summary>y = P((x₁, x₂·eˢ + t)·σ + β) from <see cref="Buffers.Input"/> into <see cref="Buffers.Output"/>.</summary>
    private void Forward(Block block, int start, int n, Buffers buffers, Span<float> logDet)
    {
        int c = _channels, s1 = _split1, s2 = _split2, h = _hidden, o = _outputs;
        var input = buffers.Input.AsSpan(0, c * n);
        var hidden = buffers.Hidden.AsSpan(0, h * n);
        SmallGemm.Multiply(h, n, s1, block.Weight1, _inputs, 1, input, n, hidden, n, accumulate: false);
        for (int r = 0; r < h; r++)
        {
            var row = hidden.Slice(r * n, n);
            TensorPrimitives.Add(row, block.ConditionHidden.AsSpan(r * _positions + start, n), row);
            TensorPrimitives.Max(row, 0f, row);
        }
        var a = buffers.Coefficients.AsSpan(0, o * n);
        SmallGemm.Multiply(o, n, h, block.ScaledWeight2, h, 1, hidden, n, a, n, accumulate: false);
        for (int r = 0; r < o; r++)
        {
            var row = a.Slice(r * n, n);
            TensorPrimitives.Add(row, block.ScaledBias2[r], row);
        }
        // s is not needed afterwards: tanh and exp go in place over a₁.
        var s = a.Slice(0, s2 * n);
        var coupled = buffers.Coupled.AsSpan(0, s2 * n);
        ChannelsFirstCoupling.AffineCoupling(a, input.Slice(s1 * n, s2 * n), s2, n, _clamp, block.LogSigmaSum, s, s, coupled, logDet);
        ChannelsFirstCoupling.Mix(input, coupled, s1, c, n, block.Sigma, block.Offset, block.Permutation, block.Rotation,
            buffers.Mixed.AsSpan(0, c * n), buffers.Output.AsSpan(0, c * n));
    }

    /// <summary>One block's weights as inference uses them.</summary>
    private sealed class Block
    {
        public Block(AllInOneCouplingBlock block, float[] positionCode, int positions)
        {
            int hidden = block.Hidden, inputs = block.SubnetInputs, split1 = block.Split1, conditionSize = block.ConditionSize;
            Weight1 = ChannelsFirstCoupling.Values(block.Weight1);
            // W₁[:, C₁:]·c + b₁ for every position: [Hidden, positions].
            ConditionHidden = new float[hidden * positions];
            SmallGemm.Multiply(hidden, positions, conditionSize, Weight1.AsSpan(split1), inputs, 1, positionCode, positions,
                ConditionHidden, positions, accumulate: false);
            var bias1 = ChannelsFirstCoupling.Values(block.Bias1);
            for (int r = 0; r < hidden; r++)
            {
                var row = ConditionHidden.AsSpan(r * positions, positions);
                TensorPrimitives.Add(row, bias1[r], row);
            }
            ScaledWeight2 = ChannelsFirstCoupling.Values(block.Weight2);
            TensorPrimitives.Multiply(ScaledWeight2, AllInOneCouplingBlock.CouplingScale, ScaledWeight2);
            ScaledBias2 = ChannelsFirstCoupling.Values(block.Bias2);
            TensorPrimitives.Multiply(ScaledBias2, AllInOneCouplingBlock.CouplingScale, ScaledBias2);
            Sigma = new float[block.Channels];
            LogSigmaSum = ChannelsFirstCoupling.ScaleActivation(ChannelsFirstCoupling.Values(block.GlobalScale), Sigma);
            Offset = ChannelsFirstCoupling.Values(block.GlobalOffset);
            Permutation = block.Permutation is { } permutation ? permutation.data<long>().Select(i => (int)i).ToArray() : null;
            Rotation = block.Rotation is { } rotation ? ChannelsFirstCoupling.Values(rotation) : null;
        }

        public float[] Weight1 { get; }          // [Hidden, SubnetInputs]; the feature columns are read in place
        public float[] ConditionHidden { get; }  // [Hidden, positions]
        public float[] ScaledWeight2 { get; }    // 0.1·W₂ [2·Split2, Hidden]
        public float[] ScaledBias2 { get; }      // 0.1·b₂
        public float[] Sigma { get; }            // σ = 0.1·softplus(g) [C]
        public float LogSigmaSum { get; }        // Σ log σ
        public float[] Offset { get; }           // β [C]
        public int[]? Permutation { get; }       // row j of y is row perm[j] of v
        public float[]? Rotation { get; }        // [C, C]: y = R·v
    }

    /// <summary>One thread's activations for a chunk, channels-first [rows, columns].</summary>
    private sealed class Buffers(int channels, int split2, int hidden, int outputs, int columns)
    {
        public float[] Input { get; set; } = new float[channels * columns];
        public float[] Output { get; set; } = new float[channels * columns];
        public float[] Mixed { get; } = new float[channels * columns];
        public float[] Hidden { get; } = new float[hidden * columns];
        public float[] Coefficients { get; } = new float[outputs * columns];
        public float[] Coupled { get; } = new float[split2 * columns];
        public float[] LogDet { get; } = new float[columns];
        public float[] Squares { get; } = new float[columns];
    }
}
