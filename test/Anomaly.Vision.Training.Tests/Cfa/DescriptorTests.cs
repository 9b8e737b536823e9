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

    [TestMethod]
    public void CpuForwardEqualsLibTorchsForwardPatchMajor()
    {
        TorchRuntime.EnsureAvailable();
        using var scope = NewDisposeScope();
        // A 5×7 grid (not square) of a 17-channel layer and a 19-channel 3×4 layer resized onto it (each more than one
        // 16-channel block: the resized one interpolates a whole block as a vector, and the rest channel by channel), two images.
        LayerShape[] layers = { new(17, 5, 7), new(19, 3, 4) };
        var random = new Random(21);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[][] maps = { Rand(2 * layers[0].Size), Rand(2 * layers[1].Size) };
        const int outChannels = 6, inChannels = 17 + 19 + 2;
        float[] weight = Rand(outChannels * inChannels), bias = Rand(outChannels);

        var stacked = new float[2 * 35 * inChannels];
        var features = new float[2 * 35 * outChannels];
        Descriptor.ForwardPatchMajor(layers, maps, 2, weight, bias, stacked, features);

        var tensors = maps.Select((m, l) => CfaTensors.FromArray(m, new long[] { 2, layers[l].Channels, layers[l].Height, layers[l].Width })).ToArray();
        var coordinates = Descriptor.Coordinates(5, 7, CPU);
        var expectedStacked = CfaTensors.ToArray(Descriptor.Stack(tensors, coordinates).permute(0, 2, 3, 1));
        var expected = CfaTensors.ToArray(Descriptor.Forward(tensors,
            CfaTensors.FromArray(weight, new long[] { outChannels, inChannels, 1, 1 }), CfaTensors.FromArray(bias, new long[] { outChannels }),
            coordinates).permute(0, 2, 3, 1));
        for (int i = 0; i < expectedStacked.Length; i++)
            Assert.AreEqual(expectedStacked[i], stacked[i], 1e-5f, $"input {i}");
        for (int i = 0; i < expected.Length; i++)
            Assert.AreEqual(expected[i], features[i], 1e-4f, $"feature {i}");
    }
}
