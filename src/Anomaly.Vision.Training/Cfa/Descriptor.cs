using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Anomaly.Vision.Training;

/// <summary>
/// CFA's descriptor: each backbone layer map is smoothed by a 3×3 average pool (stride 1, padding 1, padding counted),
/// the later layers are resized bilinearly (corners not aligned) to the first layer's grid, the maps are concatenated
/// along channels, two coordinate channels are appended (CoordConv: first the row coordinate, then the column
/// coordinate, each running linearly from −1 to 1) and a 1×1 convolution maps them to the target-oriented features.
/// </summary>
internal sealed class Descriptor : IDisposable
{
    private readonly Tensor _coordinates;    // [1, 2, H, W]

    /// <summary>Creates a descriptor with PyTorch's default Conv2d initialisation (weights and bias uniform in ±1/√fan_in), drawn from a generator seeded with <paramref name="seed"/>.</summary>
    public Descriptor(IReadOnlyList<LayerShape> layers, int outChannels, long seed, Device device)
        : this(layers, InitialWeight(layers, outChannels, seed, out var bias), bias, device)
    {
    }

    /// <summary>Creates a descriptor with the given parameters (taken over).</summary>
    public Descriptor(IReadOnlyList<LayerShape> layers, Tensor weight, Tensor bias, Device device)
    {
        Layers = layers.ToArray();
        InChannels = Layers.Sum(l => l.Channels);
        OutChannels = (int)weight.shape[0];
        GridHeight = Layers[0].Height;
        GridWidth = Layers[0].Width;
        Weight = nn.Parameter(weight.to(device));
        Bias = nn.Parameter(bias.to(device));
        _coordinates = Coordinates(GridHeight, GridWidth, device);
    }

    public LayerShape[] Layers { get; }

    public int InChannels { get; }

    public int OutChannels { get; }

    public int GridHeight { get; }

    public int GridWidth { get; }

    /// <summary>1×1 convolution weight [Out, In + 2, 1, 1].</summary>
    public TorchSharp.Modules.Parameter Weight { get; }

    /// <summary>Convolution bias [Out].</summary>
    public TorchSharp.Modules.Parameter Bias { get; }

    /// <summary>Target-oriented features [B, Out, H, W] of layer maps [B, C_l, H_l, W_l].</summary>
    public Tensor Forward(IReadOnlyList<Tensor> layerMaps) => Forward(layerMaps, Weight, Bias, _coordinates);

    /// <summary>The descriptor function with explicit parameters.</summary>
    /// <param name="layerMaps">Layer maps [B, C_l, H_l, W_l]; the first layer fixes the grid.</param>
    /// <param name="weight">Weight [Out, In + 2, 1, 1].</param>
    /// <param name="bias">Bias [Out].</param>
    /// <param name="coordinates">Coordinate channels [1, 2, H, W] (see <see cref="Coordinates"/>).</param>
    public static Tensor Forward(IReadOnlyList<Tensor> layerMaps, Tensor weight, Tensor bias, Tensor coordinates) =>
        F.conv2d(Stack(layerMaps, coordinates), weight, bias);

    /// <summary>The 1×1 convolution's input [B, In + 2, H, W]: pooled, resized and concatenated layer maps, then the coordinates.</summary>
    public static Tensor Stack(IReadOnlyList<Tensor> layerMaps, Tensor coordinates)
    {
        long batch = layerMaps[0].shape[0];
        long height = layerMaps[0].shape[2], width = layerMaps[0].shape[3];
        var parts = new Tensor[layerMaps.Count + 1];
        for (int l = 0; l < layerMaps.Count; l++)
        {
            var pooled = F.avg_pool2d(layerMaps[l], 3, stride: 1, padding: 1, count_include_pad: true);
            parts[l] = l == 0
                ? pooled
                : F.interpolate(pooled, new[] { height, width }, mode: InterpolationMode.Bilinear, align_corners: false);
        }
        parts[^1] = coordinates.expand(batch, 2, height, width);
        return cat(parts, 1);
    }

    /// <summary>
    /// The descriptor on the CPU, patch-major, in C#: LibTorch's pooling, resizing and GEMM run at a small fraction of
    /// this code's speed on some processors (<c>dotnet run -c Release --project bench -- cfa-train</c>).
    /// <paramref name="stacked"/> receives the 1×1 convolution's input X [B·H·W, In + 2] (<see cref="StackPatchMajor"/>)
    /// and <paramref name="features"/> X·Wᵀ + b [B·H·W, Out] (one <see cref="PackedGemm"/> product).
    /// </summary>
    /// <param name="layers">Layer shapes; the first fixes the grid.</param>
    /// <param name="layerMaps">One array per layer, B × C_l × H_l × W_l values.</param>
    /// <param name="batch">B.</param>
    /// <param name="weight">Weight, row-major [Out, In + 2].</param>
    /// <param name="bias">Bias [Out].</param>
    /// <param name="stacked">Receives X.</param>
    /// <param name="features">Receives the target-oriented features.</param>
    public static void ForwardPatchMajor(IReadOnlyList<LayerShape> layers, IReadOnlyList<float[]> layerMaps, int batch,
        ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, Span<float> stacked, Span<float> features)
    {
        int outChannels = bias.Length;
        int inChannels = weight.Length / outChannels;
        int rows = batch * layers[0].Height * layers[0].Width;
        StackPatchMajor(layers, layerMaps, batch, stacked);
        PackedGemm.Multiply(rows, outChannels, inChannels, stacked, inChannels, 1, weight, 1, inChannels, features, accumulate: false);
        for (int r = 0; r < rows; r++)
        {
            var row = features.Slice(r * outChannels, outChannels);
            System.Numerics.Tensors.TensorPrimitives.Add(row, bias, row);
        }
    }

    /// <summary>
    /// <see cref="Stack"/> patch-major, [B·H·W, In + 2]: 3×3 average pooling (stride 1, zero padding counted), bilinear
    /// resizing to the first layer's grid without aligned corners (PyTorch's source index (i + ½)·in/out − ½, clamped
    /// at 0), then the row and column coordinates.
    /// </summary>
    public static unsafe void StackPatchMajor(IReadOnlyList<LayerShape> layers, IReadOnlyList<float[]> layerMaps, int batch, Span<float> stacked)
    {
        int height = layers[0].Height, width = layers[0].Width, grid = height * width;
        int inChannels = layers.Sum(l => l.Channels) + 2;
        if (stacked.Length < (long)batch * grid * inChannels)
            throw new ArgumentException($"The destination holds {stacked.Length} values, {(long)batch * grid * inChannels} are needed.", nameof(stacked));
        var offsets = new int[layers.Count];
        for (int l = 1; l < layers.Count; l++)
            offsets[l] = offsets[l - 1] + layers[l - 1].Channels;
        // Work items: (image, layer, block of channels); each writes its own columns of the image's rows.
        var items = new List<(int Image, int Layer, int Channel)>();
        for (int i = 0; i < batch; i++)
            for (int l = 0; l < layers.Count; l++)
                for (int c = 0; c < layers[l].Channels; c += ChannelBlock)
                    items.Add((i, l, c));
        // PyTorch's bilinear source pixels per output row and column, per layer.
        var rowSources = layers.Select(l => Enumerable.Range(0, height).Select(i => SourceIndex(i, l.Height, height)).ToArray()).ToArray();
        var columnSources = layers.Select(l => Enumerable.Range(0, width).Select(i => SourceIndex(i, l.Width, width)).ToArray()).ToArray();
        fixed (float* destination = stacked)
        {
            nint dp = (nint)destination;
            Parallel.For(0, items.Count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
                () => new float[2 * ChannelBlock * layers.Max(l => l.Height * l.Width)],
                (index, _, pooled) =>
                {
                    var (image, l, c0) = items[index];
                    var shape = layers[l];
                    int h = shape.Height, w = shape.Width, plane = h * w;
                    int block = Math.Min(ChannelBlock, shape.Channels - c0);
                    for (int c = 0; c < block; c++)
                        AveragePool3x3(layerMaps[l].AsSpan((image * shape.Channels + c0 + c) * plane, plane), h, w, pooled.AsSpan(c * plane, plane));
                    // The block's channels are written together: consecutive values of each patch's row.
                    float* x = (float*)dp + (long)image * grid * inChannels + offsets[l] + c0;
                    if (h == height && w == width)
                    {
                        for (int i = 0; i < grid; i++)
                            for (int c = 0; c < block; c++)
                                x[(long)i * inChannels + c] = pooled[c * plane + i];
                        return pooled;
                    }
                    // Resized: the pooled block channels-last, so that a patch's channels interpolate as one vector.
                    var pixels = pooled.AsSpan(ChannelBlock * plane, ChannelBlock * plane);
                    for (int c = 0; c < block; c++)
                        for (int i = 0; i < plane; i++)
                            pixels[i * ChannelBlock + c] = pooled[c * plane + i];
                    for (int y = 0; y < height; y++)
                    {
                        var (y0, y1, ly) = rowSources[l][y];
                        for (int xo = 0; xo < width; xo++)
                        {
                            var (x0, x1, lx) = columnSources[l][xo];
                            Interpolate(pixels, (y0 * w + x0) * ChannelBlock, (y0 * w + x1) * ChannelBlock, (y1 * w + x0) * ChannelBlock,
                                (y1 * w + x1) * ChannelBlock, lx, ly, new Span<float>(x + (long)(y * width + xo) * inChannels, block));
                        }
                    }
                    return pooled;
                },
                _ => { });
            for (int image = 0; image < batch; image++)
            {
                float* x = destination + (long)image * grid * inChannels;
                for (int y = 0; y < height; y++)
                {
                    for (int xo = 0; xo < width; xo++)
                    {
                        float* row = x + (long)(y * width + xo) * inChannels;
                        row[inChannels - 2] = (float)y / (height - 1) * 2 - 1;
                        row[inChannels - 1] = (float)xo / (width - 1) * 2 - 1;
                    }
                }
            }
        }
    }

    /// <summary>
    /// Bilinear interpolation of channels-last pixels (<see cref="ChannelBlock"/> values from each offset) into
    /// <paramref name="destination"/>: ((1 − lx)·p00 + lx·p01)·(1 − ly) + ((1 − lx)·p10 + lx·p11)·ly per channel, in that
    /// order whether a whole block goes as one vector or channel by channel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Interpolate(ReadOnlySpan<float> pixels, int i00, int i01, int i10, int i11, float lx, float ly, Span<float> destination)
    {
        if (destination.Length == ChannelBlock)
        {
            var top = Vector512.Create(1 - lx) * Vector512.Create(pixels.Slice(i00, ChannelBlock)) + Vector512.Create(lx) * Vector512.Create(pixels.Slice(i01, ChannelBlock));
            var bottom = Vector512.Create(1 - lx) * Vector512.Create(pixels.Slice(i10, ChannelBlock)) + Vector512.Create(lx) * Vector512.Create(pixels.Slice(i11, ChannelBlock));
            (Vector512.Create(1 - ly) * top + Vector512.Create(ly) * bottom).CopyTo(destination);
            return;
        }
        for (int c = 0; c < destination.Length; c++)
        {
            float top = (1 - lx) * pixels[i00 + c] + lx * pixels[i01 + c];
            float bottom = (1 - lx) * pixels[i10 + c] + lx * pixels[i11 + c];
            destination[c] = (1 - ly) * top + ly * bottom;
        }
    }

    /// <summary>Channels per work item of <see cref="StackPatchMajor"/>.</summary>
    private const int ChannelBlock = 16;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AveragePool3x3(ReadOnlySpan<float> map, int h, int w, Span<float> pooled)
    {
        // Separable: the sum of up to three rows, then of up to three neighbours in that sum; the zero padding
        // counts in the 9.
        Span<float> rows = w <= 1024 ? stackalloc float[w] : new float[w];
        for (int y = 0; y < h; y++)
        {
            map.Slice(y * w, w).CopyTo(rows);
            if (y > 0)
                System.Numerics.Tensors.TensorPrimitives.Add(rows, map.Slice((y - 1) * w, w), rows);
            if (y < h - 1)
                System.Numerics.Tensors.TensorPrimitives.Add(rows, map.Slice((y + 1) * w, w), rows);
            var output = pooled.Slice(y * w, w);
            rows.CopyTo(output);
            if (w > 1)
            {
                System.Numerics.Tensors.TensorPrimitives.Add(output[1..], rows[..^1], output[1..]);
                System.Numerics.Tensors.TensorPrimitives.Add(output[..^1], rows[1..], output[..^1]);
            }
            System.Numerics.Tensors.TensorPrimitives.Multiply(output, 1f / 9f, output);
        }
    }

    /// <summary>PyTorch's bilinear source pixels and weight of the second for output index <paramref name="i"/> (corners not aligned).</summary>
    private static (int First, int Second, float Weight) SourceIndex(int i, int inSize, int outSize)
    {
        float source = Math.Max(0f, ((float)inSize / outSize) * (i + 0.5f) - 0.5f);
        int first = (int)source;
        int second = first < inSize - 1 ? first + 1 : first;
        return (first, second, source - first);
    }

    /// <summary>CoordConv's coordinate channels [1, 2, H, W]: channel 0 is 2·row/(H−1) − 1, channel 1 is 2·column/(W−1) − 1.</summary>
    public static Tensor Coordinates(int height, int width, Device device)
    {
        var values = new float[2 * height * width];
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                values[y * width + x] = (float)y / (height - 1) * 2 - 1;
                values[height * width + y * width + x] = (float)x / (width - 1) * 2 - 1;
            }
        }
        return CfaTensors.FromArray(values, new long[] { 1, 2, height, width }).to(device);
    }

    /// <summary>Current weight as a row-major [Out, In + 2] array.</summary>
    public float[] WeightArray() => CfaTensors.ToArray(Weight);

    /// <summary>Current bias.</summary>
    public float[] BiasArray() => CfaTensors.ToArray(Bias);

    public IEnumerable<TorchSharp.Modules.Parameter> Parameters()
    {
        yield return Weight;
        yield return Bias;
    }

    public void Dispose()
    {
        Weight.Dispose();
        Bias.Dispose();
        _coordinates.Dispose();
    }

    private static Tensor InitialWeight(IReadOnlyList<LayerShape> layers, int outChannels, long seed, out Tensor bias)
    {
        int fanIn = layers.Sum(l => l.Channels) + 2;
        double bound = 1.0 / Math.Sqrt(fanIn);
        using var generator = new Generator((ulong)seed, CPU);
        var weight = empty(new long[] { outChannels, fanIn, 1, 1 });
        weight.uniform_(-bound, bound, generator);
        bias = empty(new long[] { outChannels });
        bias.uniform_(-bound, bound, generator);
        return weight;
    }
}
