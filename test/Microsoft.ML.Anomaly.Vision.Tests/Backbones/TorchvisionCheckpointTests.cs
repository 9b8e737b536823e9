using System.IO.Compression;
using System.Text;
using Microsoft.ML.Anomaly.Vision.Tests.TestSupport;
using TorchSharp;
using TorchSharp.PyBridge;

namespace Microsoft.ML.Anomaly.Vision.Tests.Backbones;

[TestClass]
public sealed class TorchvisionCheckpointTests
{
    private static readonly string[] Layers = ["layer1", "layer2", "layer3", "layer4"];

    [TestMethod]
    [DataRow(".pth")]
    [DataRow(".safetensors")]
    public void Checkpoint_GivesTheLayerOutputsOfItsStateDict(string extension)
    {
        var stateDict = BackboneTestModels.RandomResNet18StateDict(seed: 4);
        string path = Path.Combine(TestImages.NewDirectory(), "resnet18" + extension);
        WriteCheckpoint(path, WithTorchvisionExtras(stateDict));

        var backbone = ResNetBackbones.FromTorchvisionCheckpoint(path);

        Assert.AreEqual(new BackboneDescription("resnet18", $"torchvision checkpoint resnet18{extension}", true), backbone.Description);
        const int size = 64;
        float[] images = BackboneTestModels.RandomImages(3 * size * size, seed: 9);
        using var fromCheckpoint = OnnxBackbone.FromBytes(backbone.GetOnnxBytes(), Layers, preferCuda: false);
        using var fromStateDict = OnnxBackbone.FromBytes(ResNetBackbones.WriteResNet18(stateDict), Layers, preferCuda: false);
        float[][] actual = fromCheckpoint.Run(images, 1, size, size);
        float[][] expected = fromStateDict.Run(images, 1, size, size);
        for (int l = 0; l < Layers.Length; l++)
        {
            Assert.IsTrue(expected[l].Any(v => v > 0), $"{Layers[l]} is degenerate");
            CollectionAssert.AreEqual(expected[l], actual[l], Layers[l]);
        }
        Assert.AreEqual(backbone.Description, fromCheckpoint.Description);
    }

    [TestMethod]
    public void WrongKeys_AreListed()
    {
        var stateDict = WithTorchvisionExtras(BackboneTestModels.RandomResNet18StateDict(seed: 4));
        stateDict.Remove("layer1.0.conv1.weight");
        stateDict["layer5.0.conv1.weight"] = (new float[9], new long[] { 1, 1, 3, 3 });
        stateDict["bn1.weight"] = (new float[32], new long[] { 32 });
        string path = Path.Combine(TestImages.NewDirectory(), "bad.safetensors");
        WriteCheckpoint(path, stateDict);

        var e = Assert.ThrowsExactly<ArgumentException>(() => ResNetBackbones.FromTorchvisionCheckpoint(path));

        Assert.AreEqual("path", e.ParamName);
        StringAssert.Contains(e.Message, "resnet18");
        StringAssert.Contains(e.Message, "missing keys: layer1.0.conv1.weight;");
        StringAssert.Contains(e.Message, "unexpected keys: layer5.0.conv1.weight;");
        StringAssert.Contains(e.Message, "bn1.weight [32] (expected [64])");
    }

    [TestMethod]
    public void PickleThatCallsAFunction_IsRefusedWithoutRunningIt()
    {
        // A pickle whose only object is os.system("touch <marker>"), as a zip-format PyTorch checkpoint.
        string folder = TestImages.NewDirectory();
        string marker = Path.Combine(folder, "marker");
        string path = Path.Combine(folder, "evil.pth");
        byte[] command = Encoding.ASCII.GetBytes($"touch {marker}");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        using (var pickle = zip.CreateEntry("archive/data.pkl").Open())
        {
            pickle.Write([0x80, 0x02]);                                     // PROTO 2
            pickle.Write(Encoding.ASCII.GetBytes("cos\nsystem\n"));         // GLOBAL os.system
            pickle.WriteByte((byte)'X');                                     // BINUNICODE command
            pickle.Write(BitConverter.GetBytes(command.Length));
            pickle.Write(command);
            pickle.Write([0x85, (byte)'R', (byte)'.']);                      // TUPLE1, REDUCE, STOP
        }

        var e = Assert.ThrowsExactly<ArgumentException>(() => ResNetBackbones.FromTorchvisionCheckpoint(path));

        StringAssert.Contains(e.Message, "cannot be read as a PyTorch state dict");
        Assert.IsFalse(File.Exists(marker));
    }

    [TestMethod]
    public void OtherFiles_AreRefused()
    {
        string path = Path.Combine(TestImages.NewDirectory(), "resnet18.onnx");
        File.WriteAllBytes(path, BackboneTestModels.UntrainedResNet18);

        var e = Assert.ThrowsExactly<ArgumentException>(() => ResNetBackbones.FromTorchvisionCheckpoint(path));

        StringAssert.Contains(e.Message, "neither a PyTorch checkpoint in zip format");
        Assert.ThrowsExactly<FileNotFoundException>(() => ResNetBackbones.FromTorchvisionCheckpoint(path + ".missing"));
    }

    /// <summary>The entries torchvision's state dict has besides the feature extractor's: the classifier and batch counters.</summary>
    private static Dictionary<string, (Array Values, long[] Shape)> WithTorchvisionExtras(Dictionary<string, float[]> stateDict)
    {
        var shapes = ResNetBackbones.ParameterShapes(ResNetArchitecture.ResNet18).ToDictionary(p => p.Key, p => p.Shape);
        var entries = stateDict.ToDictionary(p => p.Key, p => ((Array)p.Value, shapes[p.Key]));
        entries["fc.weight"] = (new float[1000 * 512], new long[] { 1000, 512 });
        entries["fc.bias"] = (new float[1000], new long[] { 1000 });
        foreach (string key in stateDict.Keys.Where(k => k.EndsWith(".running_mean", StringComparison.Ordinal)))
            entries[key.Replace(".running_mean", ".num_batches_tracked", StringComparison.Ordinal)] = (new long[] { 100 }, Array.Empty<long>());
        return entries;
    }

    /// <summary>Writes a state dict as PyTorch's zip pickle (.pth) or safetensors, as torch.save and safetensors do.</summary>
    private static void WriteCheckpoint(string path, Dictionary<string, (Array Values, long[] Shape)> entries)
    {
        using var scope = torch.NewDisposeScope();
        var tensors = entries.ToDictionary(e => e.Key, e => e.Value.Values is float[] f
            ? torch.tensor(f, e.Value.Shape)
            : torch.tensor((long[])e.Value.Values, e.Value.Shape));
        if (path.EndsWith(".safetensors", StringComparison.Ordinal))
        {
            using var stream = File.Create(path);
            Safetensors.SaveStateDict(stream, tensors);
        }
        else
        {
            using var stream = File.Create(path);
            PyTorchPickler.PickleStateDict(stream, tensors);
        }
    }
}
