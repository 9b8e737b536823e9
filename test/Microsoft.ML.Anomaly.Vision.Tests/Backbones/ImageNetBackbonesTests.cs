using System.Runtime.InteropServices;
using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Onnx;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;

namespace Microsoft.ML.Anomaly.Vision.Tests.Backbones;

/// <summary>
/// The ImageNet ResNet-18 converted from the package Microsoft.ML.DnnImageFeaturizer.ResNet18, which the library
/// references and whose build copies the ONNX files into this test's output folder.
/// </summary>
[TestClass]
public sealed class ImageNetBackbonesTests
{
    private const int Size = 224;
    private static readonly string[] Layers = ["layer1", "layer2", "layer3", "layer4"];
    private static readonly string[] OriginalStages = ["ReLU283_Output_0", "ReLU315_Output_0", "ReLU347_Output_0", "ReLU393_Output_0"];

    public TestContext TestContext { get; set; } = null!;

    private static string PackageFile(string folder, string file) =>
        Path.Combine(AppContext.BaseDirectory, "DnnImageModels", folder, file);

    [TestMethod]
    public void ConvertedLayers_EqualTheOriginalStages_At224()
    {
        // The package's preprocessing: BGR, 0–255, minus the mean image (1×3×224×224, BGR).
        float[] meanImage = MeanImage();
        var channelMeans = new float[3];
        for (int bgr = 0; bgr < 3; bgr++)
            channelMeans[bgr] = (float)meanImage.AsSpan(bgr * Size * Size, Size * Size).ToArray().Average(v => (double)v);
        TestContext.WriteLine($"mean image channel means (B, G, R): {string.Join(", ", channelMeans.Select(m => m.ToString("R")))}");
        for (int rgb = 0; rgb < 3; rgb++)
            Assert.AreEqual(channelMeans[2 - rgb], ImageNetBackbones.MeanImageChannelMeans[rgb], 1e-3, $"channel mean {rgb}");

        // A random RGB image, 0–255. The original takes BGR(x) − mean image; the converted model takes the
        // ImageNet-normalised RGB of the same image with the mean image's pixels replaced by its channel means.
        var random = new Random(5);
        int plane = Size * Size;
        float[] x = new float[3 * plane];
        for (int i = 0; i < x.Length; i++)
            x[i] = (float)(random.NextDouble() * 255);
        float[] original = new float[3 * plane];
        float[] normalised = new float[3 * plane];
        for (int rgb = 0; rgb < 3; rgb++)
        {
            int bgr = 2 - rgb;
            for (int p = 0; p < plane; p++)
            {
                float pixel = x[rgb * plane + p];
                float meanPixel = meanImage[bgr * plane + p];
                original[bgr * plane + p] = pixel - meanPixel;
                normalised[rgb * plane + p] = ((pixel - meanPixel + ImageNetBackbones.MeanImageChannelMeans[rgb]) / 255f
                    - ImageTensorConverter.Mean[rgb]) / ImageTensorConverter.StandardDeviation[rgb];
            }
        }

        float[][] expected;
        using (var originalModel = OnnxBackbone.Load(PackageFile("ResNet18Onnx", "ResNet18.onnx"), OriginalStages, preferCuda: false))
            expected = originalModel.Run(original, 1, Size, Size);
        using var converted = OnnxBackbone.FromBytes(ImageNetBackbones.ResNet18().GetOnnxBytes(), Layers, preferCuda: false);
        float[][] actual = converted.Run(normalised, 1, Size, Size);

        int[] channels = [64, 128, 256, 512];
        for (int l = 0; l < 4; l++)
        {
            int side = Size / (4 << l);
            Assert.HasCount(channels[l] * side * side, actual[l], Layers[l]);
            Assert.HasCount(expected[l].Length, actual[l], Layers[l]);
            float scale = 0, maxDiff = 0;
            for (int i = 0; i < expected[l].Length; i++)
            {
                scale = Math.Max(scale, Math.Abs(expected[l][i]));
                maxDiff = Math.Max(maxDiff, Math.Abs(expected[l][i] - actual[l][i]));
            }
            TestContext.WriteLine($"{Layers[l]}: max |converted − original| = {maxDiff:G3}, max |original| = {scale:G4}, relative {maxDiff / scale:G3}");
            Assert.IsGreaterThan(0.1f, scale, $"{Layers[l]} is degenerate");
            Assert.IsLessThanOrEqualTo(1e-4f * scale, maxDiff, $"{Layers[l]}: max difference {maxDiff} against max {scale}");
        }
    }

    [TestMethod]
    [DataRow(256, 256)]
    [DataRow(96, 160)]
    public void Converted_RunsAtOtherSizes(int height, int width)
    {
        using var backbone = OnnxBackbone.FromBytes(ImageNetBackbones.ResNet18().GetOnnxBytes(), Layers, preferCuda: false);
        float[] images = BackboneTestModels.RandomImages(2 * 3 * height * width, seed: 2);

        float[][] maps = backbone.Run(images, 2, height, width);

        var shapes = backbone.GetLayerShapes(height, width);
        for (int l = 0; l < 4; l++)
        {
            Assert.AreEqual(new LayerShape(64 << l, height / (4 << l), width / (4 << l)), shapes[l], Layers[l]);
            Assert.HasCount(2 * shapes[l].Size, maps[l]);
            Assert.IsTrue(maps[l].All(float.IsFinite) && maps[l].Any(v => v > 0), $"{Layers[l]} is not a feature map");
        }
        Assert.AreEqual(ImageNetBackbones.ResNet18Description, backbone.Description);
        Assert.IsFalse(backbone.IsUntrained);
    }

    [TestMethod]
    public void ResNet18_IsConvertedOncePerFile()
    {
        var first = ImageNetBackbones.ResNet18();
        var second = ImageNetBackbones.ResNet18(PackageFile("ResNet18Onnx", "ResNet18.onnx"));

        Assert.AreSame(first, second);
        Assert.AreSame(first.GetOnnxBytes(), second.GetOnnxBytes());
        StringAssert.Contains(first.Description.Source, ImageNetBackbones.ResNet18PackageId);
    }

    [TestMethod]
    public void OtherModels_AreRefusedWithThePackageName()
    {
        string folder = TestImages.NewDirectory();
        string untrained = Path.Combine(folder, "resnet18.onnx");
        File.WriteAllBytes(untrained, BackboneTestModels.UntrainedResNet18);

        foreach (string path in new[] { untrained, PackageFile("ResNetPrepOnnx", "ResNetPreprocess.onnx") })
        {
            var e = Assert.ThrowsExactly<ArgumentException>(() => ImageNetBackbones.ResNet18(path).GetOnnxBytes(), path);
            StringAssert.Contains(e.Message, "is not the ImageNet ResNet-18");
            StringAssert.Contains(e.Message, ImageNetBackbones.ResNet18PackageId);
        }

        string missing = Path.Combine(folder, "ResNet18.onnx");
        var notFound = Assert.ThrowsExactly<FileNotFoundException>(() => ImageNetBackbones.ResNet18(missing));
        StringAssert.Contains(notFound.Message, missing);
        StringAssert.Contains(notFound.Message, $"Add the NuGet package {ImageNetBackbones.ResNet18PackageId}");
    }

    /// <summary>The mean image of the package's ResNetPreprocess.onnx (BGR, 0–255, 1×3×224×224).</summary>
    private static float[] MeanImage()
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(PackageFile("ResNetPrepOnnx", "ResNetPreprocess.onnx")));
        var tensors = model.Graph.Initializer
            .Concat(model.Graph.Node.SelectMany(n => n.Attribute).Where(a => a.T is not null).Select(a => a.T))
            .Where(t => t.Dims.SequenceEqual([1L, 3, Size, Size]))
            .ToList();
        Assert.HasCount(1, tensors, "one 1×3×224×224 tensor (the mean image) in ResNetPreprocess.onnx");
        var tensor = tensors[0];
        return tensor.FloatData.Count > 0 ? tensor.FloatData.ToArray() : MemoryMarshal.Cast<byte, float>(tensor.RawData.Span).ToArray();
    }
}
