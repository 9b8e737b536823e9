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
/// <remarks>This is the LibTorch form, for autograd; <see cref="PatchMajorDescriptor"/> computes the same on the CPU in C#.</remarks>
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
        // The scope keeps every temporary referenced until the native call that reads it has returned.
        using var scope = NewDisposeScope();
        Weight = nn.Parameter(weight.to(device));
        Weight.DetachFromDisposeScope();
        Bias = nn.Parameter(bias.to(device));
        Bias.DetachFromDisposeScope();
        _coordinates = Coordinates(GridHeight, GridWidth, device).DetachFromDisposeScope();
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
        var host = CfaTensors.FromArray(values, new long[] { 1, 2, height, width });
        var coordinates = host.to(device);
        GC.KeepAlive(host);   // referenced until the copy has returned, whatever scope the caller has
        return coordinates;
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
