using System.Runtime.InteropServices;
using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Anomaly.Vision.Tests.Backbones;

[TestClass]
public sealed class ResNetBackbonesTests
{
    [TestMethod]
    public void UntrainedResNet18_LayerShapesAt256()
    {
        using var backbone = OnnxBackbone.FromBytes(BackboneTestModels.UntrainedResNet18,
            new[] { "layer1", "layer2", "layer3", "layer4" }, preferCuda: false);

        var shapes = backbone.GetLayerShapes(256, 256);

        CollectionAssert.AreEqual(
            new[] { new LayerShape(64, 64, 64), new LayerShape(128, 32, 32), new LayerShape(256, 16, 16), new LayerShape(512, 8, 8) },
            shapes.ToArray());
        Assert.IsTrue(backbone.IsUntrained);
        Assert.AreEqual("CPU", backbone.ExecutionProvider);
    }

    [TestMethod]
    public void WriteResNet18_OnnxRuntimeMatchesTorchSharpForward()
    {
        var stateDict = BackboneTestModels.RandomResNet18StateDict(seed: 3);
        const int batch = 2, size = 64;
        float[] images = BackboneTestModels.RandomImages(batch * 3 * size * size, seed: 11);
        string[] layers = { "layer1", "layer2", "layer3", "layer4" };

        using var backbone = OnnxBackbone.FromBytes(ResNetBackbones.WriteResNet18(stateDict), layers, preferCuda: false);
        float[][] onnx = backbone.Run(images, batch, size, size);
        Assert.IsFalse(backbone.IsUntrained);

        float[][] expected = TorchResNet18(stateDict, images, batch, size);
        int[] channels = { 64, 128, 256, 512 };
        for (int l = 0; l < 4; l++)
        {
            int spatial = size / (4 << l);
            Assert.AreEqual(batch * channels[l] * spatial * spatial, onnx[l].Length, $"length of {layers[l]}");
            Assert.AreEqual(expected[l].Length, onnx[l].Length);
            double maxAbs = 0;
            for (int i = 0; i < onnx[l].Length; i++)
            {
                float tolerance = 1e-4f * (1 + MathF.Abs(expected[l][i]));
                if (MathF.Abs(onnx[l][i] - expected[l][i]) > tolerance)
                    Assert.Fail($"{layers[l]}[{i}]: ONNX Runtime {onnx[l][i]}, TorchSharp {expected[l][i]}");
                maxAbs = Math.Max(maxAbs, Math.Abs(expected[l][i]));
            }
            // The comparison means something only if the features are not all zero.
            Assert.IsGreaterThan(0.1, maxAbs, $"{layers[l]} is degenerate");
        }
    }

    [TestMethod]
    public void WriteResNet18_MissingParameter_NamesTheKey()
    {
        var stateDict = BackboneTestModels.RandomResNet18StateDict(seed: 1);
        stateDict.Remove("layer3.1.bn2.running_var");

        var e = Assert.ThrowsExactly<ArgumentException>(() => ResNetBackbones.WriteResNet18(stateDict));

        StringAssert.Contains(e.Message, "layer3.1.bn2.running_var");
        StringAssert.Contains(e.Message, "[256]");
        Assert.AreEqual("torchvisionStateDict", e.ParamName);
    }

    [TestMethod]
    public void WriteResNet18_WrongShape_NamesKeyAndShapes()
    {
        var stateDict = BackboneTestModels.RandomResNet18StateDict(seed: 1);
        stateDict["conv1.weight"] = new float[64 * 3 * 3 * 3];

        var e = Assert.ThrowsExactly<ArgumentException>(() => ResNetBackbones.WriteResNet18(stateDict));

        StringAssert.Contains(e.Message, "conv1.weight");
        StringAssert.Contains(e.Message, "1728 values");
        StringAssert.Contains(e.Message, "[64, 3, 7, 7] = 9408");
    }

    [TestMethod]
    public void ParameterShapes_MatchTorchvisionParameterCounts()
    {
        // torchvision: resnet18 has 11,689,512 parameters and wide_resnet50_2 68,883,240; the fc layer
        // (512·1000 + 1000 and 2048·1000 + 1000) is not part of the feature extractor.
        static long Learned(ResNetArchitecture a) => ResNetBackbones.ParameterShapes(a)
            .Where(p => !p.Key.Contains("running_", StringComparison.Ordinal))
            .Sum(p => p.Shape.Aggregate(1L, (x, y) => x * y));

        Assert.AreEqual(11_689_512L - 513_000L, Learned(ResNetArchitecture.ResNet18));
        Assert.AreEqual(68_883_240L - 2_049_000L, Learned(ResNetArchitecture.WideResNet50_2));

        var wide = ResNetBackbones.ParameterShapes(ResNetArchitecture.WideResNet50_2).ToDictionary(p => p.Key, p => p.Shape);
        CollectionAssert.AreEqual(new long[] { 128, 64, 1, 1 }, wide["layer1.0.conv1.weight"]);
        CollectionAssert.AreEqual(new long[] { 256, 256, 3, 3 }, wide["layer2.0.conv2.weight"]);
        CollectionAssert.AreEqual(new long[] { 512, 256, 1, 1 }, wide["layer2.0.downsample.0.weight"]);
        CollectionAssert.AreEqual(new long[] { 2048, 1024, 1, 1 }, wide["layer4.2.conv3.weight"]);
        Assert.IsFalse(wide.ContainsKey("layer1.0.conv3.bias"));
    }

    [TestMethod]
    public void CreateUntrained_IsSeededMarkedAndKaimingScaled()
    {
        byte[] a = ResNetBackbones.CreateUntrainedResNet18(seed: 5);
        byte[] b = ResNetBackbones.CreateUntrainedResNet18(seed: 5);
        byte[] c = ResNetBackbones.CreateUntrainedResNet18(seed: 6);
        Assert.IsTrue(a.AsSpan().SequenceEqual(b), "same seed, different bytes");
        Assert.IsFalse(a.AsSpan().SequenceEqual(c), "different seeds, same bytes");

        ModelProto model = BackboneTestModels.Parse(a);
        Assert.IsTrue(model.MetadataProps.Any(p => p.Key == "anomaly_vision.untrained" && p.Value == "true"));
        StringAssert.Contains(model.DocString, "RANDOM");
        Assert.AreEqual(17, model.OpsetImport.Single().Version);
        CollectionAssert.AreEqual(new[] { "layer1", "layer2", "layer3", "layer4" }, model.Graph.Output.Select(o => o.Name).ToArray());

        // conv1: Kaiming normal with fan_out = 64·7·7 → std = sqrt(2 / 3136) = 0.025254; 9408 samples.
        float[] conv1 = Floats(model.Graph.Initializer.Single(t => t.Name == "conv1.weight"));
        double mean = conv1.Average();
        double std = Math.Sqrt(conv1.Select(v => (v - mean) * (v - mean)).Average());
        Assert.AreEqual(0.025254, std, 0.0008);
        Assert.AreEqual(0, mean, 0.0008);
        // Batch norms start as identities.
        Assert.IsTrue(Floats(model.Graph.Initializer.Single(t => t.Name == "layer1.0.bn1.weight")).All(v => v == 1f));
        Assert.IsTrue(Floats(model.Graph.Initializer.Single(t => t.Name == "layer1.0.bn1.running_mean")).All(v => v == 0f));
    }

    [TestMethod]
    public void UntrainedWideResNet50_2_LayerShapes()
    {
        byte[] model = ResNetBackbones.CreateUntrainedWideResNet50_2(seed: 1);
        using var backbone = OnnxBackbone.FromBytes(model, new[] { "layer1", "layer2", "layer3" }, preferCuda: false);

        var shapes = backbone.GetLayerShapes(64, 64);

        CollectionAssert.AreEqual(
            new[] { new LayerShape(256, 16, 16), new LayerShape(512, 8, 8), new LayerShape(1024, 4, 4) },
            shapes.ToArray());
        Assert.IsTrue(backbone.IsUntrained);
    }

    private static float[] Floats(TensorProto tensor) => MemoryMarshal.Cast<byte, float>(tensor.RawData.Span).ToArray();

    /// <summary>torchvision's ResNet-18 forward pass (eval mode) written with TorchSharp's functional operators.</summary>
    private static float[][] TorchResNet18(Dictionary<string, float[]> w, float[] images, int batch, int size)
    {
        TorchRuntime.EnsureAvailable();
        using var scope = torch.NewDisposeScope();
        var shapes = ResNetBackbones.ParameterShapes(ResNetArchitecture.ResNet18).ToDictionary(p => p.Key, p => p.Shape);
        Tensor T(string key) => FromArray(w[key], shapes[key]);
        Tensor Conv(Tensor x, string key, long stride, long pad) =>
            nn.functional.conv2d(x, T(key + ".weight"), null, new[] { stride, stride }, new[] { pad, pad });
        Tensor Bn(Tensor x, string key) => nn.functional.batch_norm(x, T(key + ".running_mean"), T(key + ".running_var"),
            T(key + ".weight"), T(key + ".bias"), false, 0.1, 1e-5);

        Tensor x = FromArray(images, new long[] { batch, 3, size, size });
        x = nn.functional.relu(Bn(Conv(x, "conv1", 2, 3), "bn1"));
        x = nn.functional.max_pool2d(x, new long[] { 3, 3 }, new long[] { 2, 2 }, new long[] { 1, 1 });
        var outputs = new float[4][];
        for (int layer = 1; layer <= 4; layer++)
        {
            for (int block = 0; block < 2; block++)
            {
                string k = $"layer{layer}.{block}";
                long stride = layer > 1 && block == 0 ? 2 : 1;
                Tensor y = nn.functional.relu(Bn(Conv(x, k + ".conv1", stride, 1), k + ".bn1"));
                y = Bn(Conv(y, k + ".conv2", 1, 1), k + ".bn2");
                Tensor identity = w.ContainsKey(k + ".downsample.0.weight")
                    ? Bn(Conv(x, k + ".downsample.0", stride, 0), k + ".downsample.1")
                    : x;
                x = nn.functional.relu(y + identity);
            }
            var contiguous = x.contiguous();
            outputs[layer - 1] = MemoryMarshal.Cast<byte, float>(contiguous.bytes).ToArray();
        }
        return outputs;
    }

    private static Tensor FromArray(float[] values, long[] shape)
    {
        var t = torch.empty(shape, ScalarType.Float32);
        values.AsSpan().CopyTo(MemoryMarshal.Cast<byte, float>(t.bytes));
        return t;
    }
}
