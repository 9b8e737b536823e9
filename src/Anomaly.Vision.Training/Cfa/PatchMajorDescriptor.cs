using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Anomaly.Vision.Training;

/// <summary>
/// CFA's descriptor (<see cref="Descriptor"/>) on the CPU in C#, patch-major: its forward pass and its parameters'
/// gradient. LibTorch's pooling, resizing and GEMM run at a small fraction of this code's speed on some processors
/// (<c>dotnet run -c Release --project bench -- cfa-train</c>).
/// </summary>
/// <remarks>
/// <para>
/// Design note. The descriptor is a 1×1 convolution of X = [pool(L₀), up₁(pool(L₁)), …, row, column]: each layer map
/// average-pooled, the later ones resized bilinearly onto the first layer's grid, then two coordinate channels. Resizing
/// treats every channel alike and the convolution mixes the channels of one position, so the two commute:
/// F = pool(L₀)·W₀ᵀ + Σ_l up_l(pool(L_l)·W_lᵀ) + row·w_r + column·w_c + b, with W_l the weight's columns of layer l.
/// Each layer's product runs at the layer's own resolution: for ResNet-18's layers 1–3 at 256 px, 4096·64 + 1024·128 +
/// 256·256 multiply-adds per output channel rather than 4096·450, a quarter; X itself is never formed.
/// </para>
/// <para>
/// The weight gradient factors the same way: ∂L/∂W_l = (up_lᵀ G)ᵀ·pool(L_l) for G = ∂L/∂F, where up_lᵀ (the resize's
/// adjoint) spreads each position's gradient back onto its four source positions with the resize's weights; the
/// coordinate columns and the bias take G summed with the coordinates as weights. Results equal the stacked form's up
/// to fp32 rounding (tests compare both with LibTorch's forward and autograd). Every sum runs in a fixed order, so
/// results do not depend on the thread count.
/// </para>
/// <para>Buffers grow to the largest batch seen and are kept; an instance serves one caller at a time.</para>
/// </remarks>
internal sealed class PatchMajorDescriptor
{
    /// <summary>Channels per work item of <see cref="Pool"/>.</summary>
    private const int PoolChannelBlock = 16;

    /// <summary>Rows (positions) per product of the weight gradient.</summary>
    private const int GradientRowsPerProduct = 1024;

    private readonly LayerShape[] _layers;
    private readonly int[] _offsets;          // first weight column of each layer
    private readonly int _in;                 // Σ channels + 2
    private readonly int _out;
    private readonly int _height;
    private readonly int _width;
    private readonly Resize[] _resizes;       // per layer (unused for the first)
    private readonly float[] _rowCoordinates;
    private readonly float[] _columnCoordinates;
    private int _capacity;
    private int _pooledBatch;
    private float[][] _pooled = [];           // per layer: [B·h·w, C_l]
    private float[][] _products = [];         // per later layer: [B·h·w, Out], pool(L_l)·W_lᵀ, or in the gradient up_lᵀ G

    /// <summary>Creates the descriptor's CPU form for layer maps of <paramref name="layers"/> (the first fixes the grid) and <paramref name="outChannels"/> features.</summary>
    public PatchMajorDescriptor(IReadOnlyList<LayerShape> layers, int outChannels)
    {
        _layers = layers.ToArray();
        _offsets = new int[_layers.Length];
        for (int l = 1; l < _layers.Length; l++)
            _offsets[l] = _offsets[l - 1] + _layers[l - 1].Channels;
        _in = _layers.Sum(l => l.Channels) + 2;
        _out = outChannels;
        _height = _layers[0].Height;
        _width = _layers[0].Width;
        _resizes = _layers.Select(l => new Resize(l.Height, l.Width, _height, _width)).ToArray();
        _rowCoordinates = Enumerable.Range(0, _height).Select(y => (float)y / (_height - 1) * 2 - 1).ToArray();
        _columnCoordinates = Enumerable.Range(0, _width).Select(x => (float)x / (_width - 1) * 2 - 1).ToArray();
    }

    /// <summary>Positions of the feature grid.</summary>
    public int Grid => _height * _width;

    /// <summary>The forward pass: <see cref="Pool"/>, then <see cref="Combine"/>.</summary>
    public void Forward(IReadOnlyList<float[]> layerMaps, int batch, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, Span<float> features)
    {
        Pool(layerMaps, batch);
        Combine(batch, weight, bias, features);
    }

    /// <summary>
    /// Average-pools every layer map (3×3, stride 1, zero padding counted) into the patch-major buffers the products read
    /// (kept for <see cref="AddGradients"/>).
    /// </summary>
    /// <param name="layerMaps">One array per layer, B × C_l × H_l × W_l values.</param>
    /// <param name="batch">B.</param>
    public unsafe void Pool(IReadOnlyList<float[]> layerMaps, int batch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        if (layerMaps.Count != _layers.Length)
            throw new ArgumentException($"Expected {_layers.Length} layer maps, got {layerMaps.Count}.", nameof(layerMaps));
        for (int l = 0; l < _layers.Length; l++)
        {
            if (layerMaps[l].Length < (long)batch * _layers[l].Size)
                throw new ArgumentException($"Layer {l} map holds {layerMaps[l].Length} values, fewer than {batch} × {_layers[l]}.", nameof(layerMaps));
        }
        _pooledBatch = 0;
        EnsureCapacity(batch);
        var items = new List<(int Image, int Layer, int Channel)>();
        for (int i = 0; i < batch; i++)
            for (int l = 0; l < _layers.Length; l++)
                for (int c = 0; c < _layers[l].Channels; c += PoolChannelBlock)
                    items.Add((i, l, c));
        Parallel.For(0, items.Count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            () => new float[PoolChannelBlock * _layers.Max(l => l.Height * l.Width)],
            (index, _, pooled) =>
            {
                var (image, l, c0) = items[index];
                var shape = _layers[l];
                int plane = shape.Height * shape.Width, channels = shape.Channels;
                int block = Math.Min(PoolChannelBlock, channels - c0);
                for (int c = 0; c < block; c++)
                    AveragePool3x3(layerMaps[l].AsSpan((image * channels + c0 + c) * plane, plane), shape.Height, shape.Width, pooled.AsSpan(c * plane, plane));
                // The block's channels are written together: consecutive values of each position's row.
                var destination = _pooled[l].AsSpan(image * plane * channels);
                for (int i = 0; i < plane; i++)
                    for (int c = 0; c < block; c++)
                        destination[i * channels + c0 + c] = pooled[c * plane + i];
                return pooled;
            },
            _ => { });
        _pooledBatch = batch;
    }

    /// <summary>
    /// The features of the batch last pooled: the first layer's product, then per position the coordinates' terms, the
    /// bias and every later layer's product resized.
    /// </summary>
    /// <param name="batch">B, as pooled.</param>
    /// <param name="weight">Weight, row-major [Out, Σ channels + 2].</param>
    /// <param name="bias">Bias [Out].</param>
    /// <param name="features">Receives [B·H·W, Out].</param>
    public unsafe void Combine(int batch, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, Span<float> features)
    {
        CheckBatch(batch);
        if (weight.Length != _out * _in)
            throw new ArgumentException($"The weight holds {weight.Length} values, {_out} × {_in} are needed.", nameof(weight));
        if (bias.Length != _out)
            throw new ArgumentException($"The bias holds {bias.Length} values, {_out} are needed.", nameof(bias));
        if (features.Length < (long)batch * Grid * _out)
            throw new ArgumentException($"The destination holds {features.Length} values, {(long)batch * Grid * _out} are needed.", nameof(features));

        // F = pool(L₀)·W₀ᵀ and P_l = pool(L_l)·W_lᵀ: B is the weight's block of columns, read transposed in place.
        var first = _layers[0];
        PackedGemm.Multiply(batch * Grid, _out, first.Channels, _pooled[0], first.Channels, 1, weight, 1, _in, features, accumulate: false);
        for (int l = 1; l < _layers.Length; l++)
        {
            var shape = _layers[l];
            PackedGemm.Multiply(batch * shape.Height * shape.Width, _out, shape.Channels, _pooled[l], shape.Channels, 1,
                weight[_offsets[l]..], 1, _in, _products[l], accumulate: false);
        }

        var rowWeight = new float[_out];
        var columnWeight = new float[_out];
        for (int o = 0; o < _out; o++)
        {
            rowWeight[o] = weight[o * _in + _in - 2];
            columnWeight[o] = weight[o * _in + _in - 1];
        }
        var biasValues = bias.ToArray();
        fixed (float* output = features)
        {
            nint outputAddress = (nint)output;
            Parallel.For(0, batch * _height, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
                () => new float[_out],
                (item, _, rowTerm) =>
                {
                    int image = item / _height, y = item % _height;
                    TensorPrimitives.MultiplyAdd(rowWeight, _rowCoordinates[y], biasValues, rowTerm);
                    for (int x = 0; x < _width; x++)
                    {
                        var f = new Span<float>((float*)outputAddress + (long)((image * _height + y) * _width + x) * _out, _out);
                        TensorPrimitives.Add(f, rowTerm, f);
                        TensorPrimitives.MultiplyAdd(columnWeight, _columnCoordinates[x], f, f);
                        for (int l = 1; l < _layers.Length; l++)
                            AddResized(l, image, y, x, f);
                    }
                    return rowTerm;
                },
                _ => { });
        }
    }

    /// <summary>
    /// Adds the parameters' gradients for the batch last pooled, given the features' gradient G = ∂L/∂F [B·H·W, Out]:
    /// ∂L/∂W to <paramref name="weightGradient"/> (row-major [Out, Σ channels + 2]) and ∂L/∂b to <paramref name="biasGradient"/>.
    /// </summary>
    public unsafe void AddGradients(int batch, ReadOnlySpan<float> featureGradient, Span<float> weightGradient, Span<float> biasGradient)
    {
        CheckBatch(batch);
        if (featureGradient.Length < (long)batch * Grid * _out)
            throw new ArgumentException($"The gradient holds {featureGradient.Length} values, {(long)batch * Grid * _out} are needed.", nameof(featureGradient));
        if (weightGradient.Length != _out * _in)
            throw new ArgumentException($"The weight gradient holds {weightGradient.Length} values, {_out} × {_in} are needed.", nameof(weightGradient));
        if (biasGradient.Length != _out)
            throw new ArgumentException($"The bias gradient holds {biasGradient.Length} values, {_out} are needed.", nameof(biasGradient));

        // Per (image, block of output channels): up_lᵀ G into the products' buffers, and G summed plainly, by row
        // coordinate and by column coordinate. G is read once per block, so the blocks are whole rows of G unless the
        // threads outnumber the images.
        int threads = Environment.ProcessorCount;
        int split = (threads + batch - 1) / batch;
        int blockChannels = Math.Max(8, ((_out + split - 1) / split + 7) / 8 * 8);
        int blocks = (_out + blockChannels - 1) / blockChannels;
        var sums = new float[batch * 3 * _out];
        fixed (float* gradientPointer = featureGradient)
        {
            nint gradientAddress = (nint)gradientPointer;
            Parallel.For(0, batch * blocks, new ParallelOptions { MaxDegreeOfParallelism = threads },
                item => SpreadBlock(item / blocks, item % blocks * blockChannels, Math.Min(blockChannels, _out - item % blocks * blockChannels),
                    (float*)gradientAddress, sums));
        }

        var product = new float[_out * _layers.Max(l => l.Channels)];
        for (int l = 0; l < _layers.Length; l++)
        {
            var shape = _layers[l];
            int rows = batch * shape.Height * shape.Width, channels = shape.Channels;
            ReadOnlySpan<float> spread = l == 0 ? featureGradient : _products[l];
            // (∂L/∂W_l) = Dᵀ·pool(L_l): A = Dᵀ [Out × rows] read from D [rows × Out] (D = G for the first layer), summed
            // over blocks of rows: the product packs a block of pool(L_l) whole, which must stay in the inner caches.
            for (int start = 0; start < rows; start += GradientRowsPerProduct)
            {
                int count = Math.Min(GradientRowsPerProduct, rows - start);
                PackedGemm.Multiply(_out, channels, count, spread[(start * _out)..], 1, _out, _pooled[l].AsSpan(start * channels), channels, 1,
                    product, accumulate: start > 0);
            }
            for (int o = 0; o < _out; o++)
            {
                var columns = weightGradient.Slice(o * _in + _offsets[l], channels);
                TensorPrimitives.Add(columns, product.AsSpan(o * channels, channels), columns);
            }
        }
        for (int image = 0; image < batch; image++)
        {
            TensorPrimitives.Add(biasGradient, sums.AsSpan((image * 3 + 0) * _out, _out), biasGradient);
            for (int o = 0; o < _out; o++)
            {
                weightGradient[o * _in + _in - 2] += sums[(image * 3 + 1) * _out + o];
                weightGradient[o * _in + _in - 1] += sums[(image * 3 + 2) * _out + o];
            }
        }
    }

    /// <summary>
    /// For one image and <paramref name="count"/> output channels from <paramref name="c0"/>: up_lᵀ G into the later layers' buffers,
    /// and G summed plainly, by row coordinate and by column coordinate into the image's three rows of <paramref name="sums"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private unsafe void SpreadBlock(int image, int c0, int count, float* gradient, float[] sums)
    {
        for (int l = 1; l < _layers.Length; l++)
        {
            int plane = _layers[l].Height * _layers[l].Width;
            for (int i = 0; i < plane; i++)
                _products[l].AsSpan((image * plane + i) * _out + c0, count).Clear();
        }
        // Per output position: the four source positions of every later layer and their weights.
        int spreads = 4 * (_layers.Length - 1);
        Span<nint> targets = stackalloc nint[spreads];
        Span<float> weights = stackalloc float[spreads];
        var rowSums = new float[count];
        fixed (float* sumsBase = sums)
        fixed (float* rowSum = rowSums)
        {
            float* plain = sumsBase + (image * 3 + 0) * _out + c0;
            float* byRow = sumsBase + (image * 3 + 1) * _out + c0;
            float* byColumn = sumsBase + (image * 3 + 2) * _out + c0;
            for (int y = 0; y < _height; y++)
            {
                new Span<float>(rowSum, count).Clear();
                for (int x = 0; x < _width; x++)
                {
                    float* g = gradient + (long)((image * _height + y) * _width + x) * _out + c0;
                    for (int l = 1, t = 0; l < _layers.Length; l++, t += 4)
                    {
                        var (y0, y1, ly) = _resizes[l].Rows[y];
                        var (x0, x1, lx) = _resizes[l].Columns[x];
                        int w = _layers[l].Width;
                        float* layer = Pinned(_products[l]) + (long)image * _layers[l].Height * w * _out + c0;
                        targets[t] = (nint)(layer + (y0 * w + x0) * _out);
                        targets[t + 1] = (nint)(layer + (y0 * w + x1) * _out);
                        targets[t + 2] = (nint)(layer + (y1 * w + x0) * _out);
                        targets[t + 3] = (nint)(layer + (y1 * w + x1) * _out);
                        weights[t] = (1 - ly) * (1 - lx);
                        weights[t + 1] = (1 - ly) * lx;
                        weights[t + 2] = ly * (1 - lx);
                        weights[t + 3] = ly * lx;
                    }
                    float column = _columnCoordinates[x];
                    int c = 0;
                    for (; c <= count - Vector256<float>.Count; c += Vector256<float>.Count)
                    {
                        var value = Vector256.Load(g + c);
                        (Vector256.Load(rowSum + c) + value).Store(rowSum + c);
                        Vector256.FusedMultiplyAdd(Vector256.Create(column), value, Vector256.Load(byColumn + c)).Store(byColumn + c);
                        for (int t = 0; t < spreads; t++)
                        {
                            float* target = (float*)targets[t] + c;
                            Vector256.FusedMultiplyAdd(Vector256.Create(weights[t]), value, Vector256.Load(target)).Store(target);
                        }
                    }
                    for (; c < count; c++)
                    {
                        rowSum[c] += g[c];
                        byColumn[c] = MathF.FusedMultiplyAdd(column, g[c], byColumn[c]);
                        for (int t = 0; t < spreads; t++)
                        {
                            float* target = (float*)targets[t] + c;
                            *target = MathF.FusedMultiplyAdd(weights[t], g[c], *target);
                        }
                    }
                }
                float row = _rowCoordinates[y];
                for (int c = 0; c < count; c++)
                {
                    plain[c] += rowSum[c];
                    byRow[c] = MathF.FusedMultiplyAdd(row, rowSum[c], byRow[c]);
                }
            }
        }
    }

    /// <summary>The first element of an array allocated pinned (it never moves).</summary>
    private static unsafe float* Pinned(float[] array) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));

    /// <summary>f += layer l's product at output position (y, x), bilinearly from its four source positions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AddResized(int l, int image, int y, int x, Span<float> f)
    {
        var resize = _resizes[l];
        var (y0, y1, ly) = resize.Rows[y];
        var (x0, x1, lx) = resize.Columns[x];
        int w = _layers[l].Width, start = image * _layers[l].Height * w;
        float w00 = (1 - ly) * (1 - lx), w01 = (1 - ly) * lx, w10 = ly * (1 - lx), w11 = ly * lx;
        ReadOnlySpan<float> p00 = Row(l, start + y0 * w + x0), p01 = Row(l, start + y0 * w + x1);
        ReadOnlySpan<float> p10 = Row(l, start + y1 * w + x0), p11 = Row(l, start + y1 * w + x1);
        int c = 0;
        for (; c <= _out - Vector256<float>.Count; c += Vector256<float>.Count)
        {
            var sum = Vector256.Create(w00) * Vector256.Create(p00[c..]) + Vector256.Create(w01) * Vector256.Create(p01[c..])
                + Vector256.Create(w10) * Vector256.Create(p10[c..]) + Vector256.Create(w11) * Vector256.Create(p11[c..]);
            (Vector256.Create(f[c..]) + sum).CopyTo(f[c..]);
        }
        for (; c < _out; c++)
            f[c] += w00 * p00[c] + w01 * p01[c] + w10 * p10[c] + w11 * p11[c];
    }

    private Span<float> Row(int l, int position) => _products[l].AsSpan(position * _out, _out);

    private void EnsureCapacity(int batch)
    {
        if (batch <= _capacity)
            return;
        _pooled = _layers.Select(l => GC.AllocateUninitializedArray<float>(batch * l.Size)).ToArray();
        _products = _layers.Select((l, i) => i == 0 ? [] : GC.AllocateUninitializedArray<float>(batch * l.Height * l.Width * _out, pinned: true)).ToArray();
        _capacity = batch;
    }

    private void CheckBatch(int batch)
    {
        if (batch != _pooledBatch)
            throw new ArgumentOutOfRangeException(nameof(batch), batch, $"The batch must be the {_pooledBatch} images last pooled.");
    }

    /// <summary>The 3×3 average of a map (stride 1, zero padding counted in the 9), as separable sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void AveragePool3x3(ReadOnlySpan<float> map, int h, int w, Span<float> pooled)
    {
        Span<float> rows = w <= 1024 ? stackalloc float[w] : new float[w];
        for (int y = 0; y < h; y++)
        {
            map.Slice(y * w, w).CopyTo(rows);
            if (y > 0)
                TensorPrimitives.Add(rows, map.Slice((y - 1) * w, w), rows);
            if (y < h - 1)
                TensorPrimitives.Add(rows, map.Slice((y + 1) * w, w), rows);
            var output = pooled.Slice(y * w, w);
            rows.CopyTo(output);
            if (w > 1)
            {
                TensorPrimitives.Add(output[1..], rows[..^1], output[1..]);
                TensorPrimitives.Add(output[..^1], rows[1..], output[..^1]);
            }
            TensorPrimitives.Multiply(output, 1f / 9f, output);
        }
    }

    /// <summary>PyTorch's bilinear resize without aligned corners: per output row and column, the two source indices and the second's weight.</summary>
    private sealed class Resize(int inHeight, int inWidth, int outHeight, int outWidth)
    {
        public readonly (int First, int Second, float Weight)[] Rows = Enumerable.Range(0, outHeight).Select(i => SourceIndex(i, inHeight, outHeight)).ToArray();
        public readonly (int First, int Second, float Weight)[] Columns = Enumerable.Range(0, outWidth).Select(i => SourceIndex(i, inWidth, outWidth)).ToArray();

        /// <summary>Source index (i + ½)·in/out − ½, clamped at 0; its integer part and the next index (clamped at the end).</summary>
        private static (int First, int Second, float Weight) SourceIndex(int i, int inSize, int outSize)
        {
            float source = Math.Max(0f, ((float)inSize / outSize) * (i + 0.5f) - 0.5f);
            int first = (int)source;
            int second = first < inSize - 1 ? first + 1 : first;
            return (first, second, source - first);
        }
    }
}
