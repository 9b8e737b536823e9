using Anomaly.Vision.Training;
using static TorchSharp.torch;

namespace Anomaly.Vision.Training.Tests.Cfa;

[TestClass]
public sealed class DescriptorTests
{
    // Layer 0: 1 channel on 4×4 (fixes the grid); layer 1: 2 channels on 3×3. Input channels 3, plus 2 coordinates.
    private static readonly LayerShape[] Layers = { new(1, 4, 4), new(2, 3, 3) };

    private static float[] Run(float[] layer0, float[] layer1, float[] weight /* [Out, 5] */, float[] bias)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        int outChannels = bias.Length;
        using var descriptor = new Descriptor(Layers,
            CfaTensors.FromArray(weight, new long[] { outChannels, 5, 1, 1 }), CfaTensors.FromArray(bias, new long[] { outChannels }), CPU);
        var output = descriptor.Forward(new[]
        {
            CfaTensors.FromArray(layer0, new long[] { 1, 1, 4, 4 }),
            CfaTensors.FromArray(layer1, new long[] { 1, 2, 3, 3 }),
        });
        CollectionAssert.AreEqual(new long[] { 1, outChannels, 4, 4 }, output.shape);
        return CfaTensors.ToArray(output);
    }

    [TestMethod]
    public void FirstLayerIsAveragePooledCountingThePadding()
    {
        var ones = Enumerable.Repeat(1f, 16).ToArray();
        var output = Run(ones, new float[18], new float[] { 1, 0, 0, 0, 0 }, new float[] { 0 });
        Assert.AreEqual(4f / 9, output[0 * 4 + 0], 1e-6f);   // corner sees 4 of 9
        Assert.AreEqual(6f / 9, output[0 * 4 + 1], 1e-6f);   // edge sees 6 of 9
        Assert.AreEqual(1f, output[1 * 4 + 1], 1e-6f);       // inside sees 9 of 9
    }

    [TestMethod]
    public void CoordinateChannelsAreRowThenColumnFromMinusOneToOne()
    {
        // out = 2·row + 3·column + 0.5, row = 2y/3 − 1, column = 2x/3 − 1 on the 4×4 grid.
        var output = Run(new float[16], new float[18], new float[] { 0, 0, 0, 2, 3 }, new float[] { 0.5f });
        Assert.AreEqual(-2f + 3f + 0.5f, output[0 * 4 + 3], 1e-6f);                         // y 0, x 3
        Assert.AreEqual(2f * (1f / 3) + 3f * (-1f / 3) + 0.5f, output[2 * 4 + 1], 1e-6f);   // y 2, x 1
        Assert.AreEqual(2f + 3f + 0.5f, output[3 * 4 + 3], 1e-6f);                          // y 3, x 3
    }

    [TestMethod]
    public void LaterLayersArePooledThenResizedBilinearlyWithoutAlignedCorners()
    {
        // Layer 1 channel 0 is 9 at (0,0), else 0 → pooled (padding counted) = outer([1,1,0],[1,1,0]).
        // Resizing 3 → 4 with half-pixel centres: source = 0.75·(dst + 0.5) − 0.5, clamped at 0 →
        // dst 0 → p0; dst 1 → 0.375 p0 + 0.625 p1; dst 2 → 0.625 p1 + 0.375 p2; dst 3 → p2.
        // Profile [1,1,0] becomes a = [1, 1, 0.625, 0]; output (y, x) = a[y]·a[x].
        var layer1 = new float[18];
        layer1[0] = 9f;
        var output = Run(new float[16], layer1, new float[] { 0, 1, 0, 0, 0 }, new float[] { 0 });
        float[] a = { 1f, 1f, 0.625f, 0f };
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++)
                Assert.AreEqual(a[y] * a[x], output[y * 4 + x], 1e-6f, $"({y},{x})");
    }

    [TestMethod]
    public void WholeOutputMatchesHandComputationOnRandomWeights()
    {
        var random = new Random(7);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)random.NextDouble() * 2 - 1).ToArray();
        var layer0 = Rand(16);
        var layer1 = Rand(18);
        var weight = Rand(3 * 5);
        var bias = Rand(3);
        var output = Run(layer0, layer1, weight, bias);

        // Input channels on the 4×4 grid: pooled layer 0, then both pooled-and-resized layer-1 channels, then coordinates.
        var inputs = new float[5][];
        inputs[0] = Pool(layer0, 4, 4);
        for (int c = 0; c < 2; c++)
            inputs[1 + c] = Resize(Pool(layer1.AsSpan(c * 9, 9).ToArray(), 3, 3), 3, 3, 4, 4);
        inputs[3] = new float[16];
        inputs[4] = new float[16];
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++)
            {
                inputs[3][y * 4 + x] = 2f * y / 3 - 1;
                inputs[4][y * 4 + x] = 2f * x / 3 - 1;
            }
        for (int o = 0; o < 3; o++)
            for (int p = 0; p < 16; p++)
            {
                double expected = bias[o];
                for (int i = 0; i < 5; i++)
                    expected += weight[o * 5 + i] * inputs[i][p];
                Assert.AreEqual(expected, output[o * 16 + p], 1e-5, $"channel {o} position {p}");
            }
    }

    [TestMethod]
    public void DefaultInitialisationIsUniformWithinOneOverSquareRootOfFanInAndSeeded()
    {
        TorchRuntime.EnsureAvailable();
        using var a = new Descriptor(Layers, 4, 123, CPU);
        using var b = new Descriptor(Layers, 4, 123, CPU);
        using var c = new Descriptor(Layers, 4, 124, CPU);
        var wa = a.WeightArray();
        Assert.HasCount(4 * 5, wa);
        Assert.IsTrue(wa.Concat(a.BiasArray()).All(v => Math.Abs(v) <= 1 / Math.Sqrt(5)));
        CollectionAssert.AreEqual(wa, b.WeightArray());
        CollectionAssert.AreEqual(a.BiasArray(), b.BiasArray());
        CollectionAssert.AreNotEqual(wa, c.WeightArray());
    }

    private static float[] Pool(float[] map, int h, int w)
    {
        var result = new float[h * w];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                float sum = 0;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++)
                        if (y + dy >= 0 && y + dy < h && x + dx >= 0 && x + dx < w)
                            sum += map[(y + dy) * w + x + dx];
                result[y * w + x] = sum / 9;
            }
        return result;
    }

    private static float[] Resize(float[] map, int h, int w, int outH, int outW)
    {
        static (int, int, float) Source(int dst, int inSize, int outSize)
        {
            float s = Math.Max(0f, (dst + 0.5f) * inSize / outSize - 0.5f);
            int i0 = (int)Math.Floor(s);
            int i1 = Math.Min(i0 + 1, inSize - 1);
            return (i0, i1, s - i0);
        }
        var result = new float[outH * outW];
        for (int y = 0; y < outH; y++)
        {
            var (y0, y1, ly) = Source(y, h, outH);
            for (int x = 0; x < outW; x++)
            {
                var (x0, x1, lx) = Source(x, w, outW);
                result[y * outW + x] =
                    (1 - ly) * ((1 - lx) * map[y0 * w + x0] + lx * map[y0 * w + x1]) +
                    ly * ((1 - lx) * map[y1 * w + x0] + lx * map[y1 * w + x1]);
            }
        }
        return result;
    }

    // Three layers on a 5×7 grid (not square): 17 channels on the grid, 19 on 3×4 and 9 on 2×3 resized onto it (channel
    // counts that are not multiples of a pooling block or a vector), 70 output channels (one gradient block of 64 and a
    // part block, a vector tail), two images.
    private static readonly LayerShape[] CpuLayers = { new(17, 5, 7), new(19, 3, 4), new(9, 2, 3) };
    private const int CpuOut = 70, CpuIn = 17 + 19 + 9 + 2, CpuBatch = 2, CpuGrid = 35;

    private static (float[][] Maps, float[] Weight, float[] Bias, Func<int, float[]> Rand) CpuCase(int seed)
    {
        var random = new Random(seed);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var maps = CpuLayers.Select(l => Rand(CpuBatch * l.Size)).ToArray();
        return (maps, Rand(CpuOut * CpuIn), Rand(CpuOut), Rand);
    }

    /// <summary>LibTorch's descriptor on the case, patch-major [B·H·W, Out], with the parameters as leaves of autograd.</summary>
    private static (Tensor Features, Tensor Weight, Tensor Bias) LibTorchForward(float[][] maps, float[] weight, float[] bias)
    {
        var tensors = maps.Select((m, l) => CfaTensors.FromArray(m, new long[] { CpuBatch, CpuLayers[l].Channels, CpuLayers[l].Height, CpuLayers[l].Width })).ToArray();
        var w = CfaTensors.FromArray(weight, new long[] { CpuOut, CpuIn, 1, 1 }).requires_grad_(true);
        var b = CfaTensors.FromArray(bias, new long[] { CpuOut }).requires_grad_(true);
        var features = Descriptor.Forward(tensors, w, b, Descriptor.Coordinates(5, 7, CPU)).permute(0, 2, 3, 1).reshape(CpuBatch * CpuGrid, CpuOut);
        return (features, w, b);
    }

    [TestMethod]
    public void CpuForwardEqualsLibTorchs()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var (maps, weight, bias, _) = CpuCase(21);

        var features = new float[CpuBatch * CpuGrid * CpuOut];
        new PatchMajorDescriptor(CpuLayers, CpuOut).Forward(maps, CpuBatch, weight, bias, features);

        var expected = CfaTensors.ToArray(LibTorchForward(maps, weight, bias).Features);
        for (int i = 0; i < expected.Length; i++)
            Assert.AreEqual(expected[i], features[i], 1e-4f, $"feature {i}");
    }

    [TestMethod]
    public void CpuCombineAndGradientsTakeOnlyTheBatchLastPooled()
    {
        var (maps, weight, bias, _) = CpuCase(23);
        var descriptor = new PatchMajorDescriptor(CpuLayers, CpuOut);
        var features = new float[CpuBatch * CpuGrid * CpuOut];
        var ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => descriptor.Combine(CpuBatch, weight, bias, features));
        Assert.AreEqual("batch", ex.ParamName);
        descriptor.Pool(maps, CpuBatch);
        descriptor.Pool(maps, 1);
        ex = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => descriptor.AddGradients(CpuBatch, features, new float[CpuOut * CpuIn], new float[CpuOut]));
        Assert.AreEqual("batch", ex.ParamName);
        descriptor.Combine(1, weight, bias, features);
        var both = new float[CpuBatch * CpuGrid * CpuOut];
        new PatchMajorDescriptor(CpuLayers, CpuOut).Forward(maps, CpuBatch, weight, bias, both);
        CollectionAssert.AreEqual(both.Take(CpuGrid * CpuOut).ToArray(), features.Take(CpuGrid * CpuOut).ToArray(), "the first image alone");
    }

    [TestMethod]
    public void CpuGradientsEqualAutogradsAndAreAddedToWhatIsThere()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        var (maps, weight, bias, rand) = CpuCase(22);
        var featureGradient = rand(CpuBatch * CpuGrid * CpuOut);
        float[] weightStart = rand(CpuOut * CpuIn), biasStart = rand(CpuOut);

        var descriptor = new PatchMajorDescriptor(CpuLayers, CpuOut);
        descriptor.Forward(maps, CpuBatch, weight, bias, new float[CpuBatch * CpuGrid * CpuOut]);
        float[] weightGradient = (float[])weightStart.Clone(), biasGradient = (float[])biasStart.Clone();
        descriptor.AddGradients(CpuBatch, featureGradient, weightGradient, biasGradient);

        var (features, w, b) = LibTorchForward(maps, weight, bias);
        (features * CfaTensors.FromArray(featureGradient, new long[] { CpuBatch * CpuGrid, CpuOut })).sum().backward();
        var expectedWeight = CfaTensors.ToArray(w.grad!);
        var expectedBias = CfaTensors.ToArray(b.grad!);
        for (int i = 0; i < expectedWeight.Length; i++)
            Assert.AreEqual(weightStart[i] + expectedWeight[i], weightGradient[i], 1e-4f * Math.Max(1f, Math.Abs(expectedWeight[i])), $"weight {i}");
        for (int i = 0; i < expectedBias.Length; i++)
            Assert.AreEqual(biasStart[i] + expectedBias[i], biasGradient[i], 1e-4f * Math.Max(1f, Math.Abs(expectedBias[i])), $"bias {i}");
    }
}
