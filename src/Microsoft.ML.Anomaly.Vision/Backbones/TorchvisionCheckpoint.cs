using System.Collections;
using Anomaly.Vision.Training;
using TorchSharp;
using TorchSharp.PyBridge;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// Reads a torchvision ResNet state dict from a PyTorch checkpoint (<c>torch.save(model.state_dict(), …)</c>, zip
/// format) or a safetensors file, recognises the architecture from its keys and checks every key and shape.
/// </summary>
/// <remarks>
/// Reading goes through TorchSharp.PyBridge. Its unpickler runs no code from the file: it rebuilds tensors and
/// dictionaries only, and any other Python object the pickle names becomes an inert placeholder (which this
/// reader then refuses); safetensors files hold only a JSON header and raw tensor data.
/// </remarks>
internal static class TorchvisionCheckpoint
{
    private const int ListedKeys = 12;

    /// <summary>Reads and checks the checkpoint at <paramref name="path"/>.</summary>
    /// <returns>The architecture and its parameters by torchvision key, as float32 in row-major order.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ArgumentException">The file is not a checkpoint of resnet18 or wide_resnet50_2; the message lists the
    /// missing, unexpected and misshapen keys.</exception>
    public static (ResNetArchitecture Architecture, Dictionary<string, float[]> Parameters) Read(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"The checkpoint '{path}' does not exist.", path);
        TorchRuntime.EnsureAvailable();
        using var scope = torch.NewDisposeScope();
        IEnumerable<KeyValuePair<string, object?>> entries = Load(path);

        var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal);
        var values = new Dictionary<string, float[]>(StringComparer.Ordinal);
        var notTensors = new List<string>();
        foreach (var (key, value) in entries)
        {
            if (value is not torch.Tensor tensor)
            {
                notTensors.Add(key);
                continue;
            }
            shapes[key] = tensor.shape;
            if (tensor.is_floating_point())
            {
                using var contiguous = tensor.to_type(torch.ScalarType.Float32).contiguous();
                values[key] = contiguous.data<float>().ToArray();
            }
        }

        var architecture = shapes.ContainsKey("layer1.0.conv3.weight") ? ResNetArchitecture.WideResNet50_2 : ResNetArchitecture.ResNet18;
        var expected = ResNetBackbones.ParameterShapes(architecture);
        var expectedKeys = new HashSet<string>(expected.Select(e => e.Key), StringComparer.Ordinal);
        var missing = expected.Where(e => !shapes.ContainsKey(e.Key)).Select(e => e.Key).ToList();
        var misshapen = expected
            .Where(e => shapes.TryGetValue(e.Key, out var shape) && (!shape.SequenceEqual(e.Shape) || !values.ContainsKey(e.Key)))
            .Select(e => $"{e.Key} {Shape(shapes[e.Key])}{(values.ContainsKey(e.Key) ? "" : " not floating point")} (expected {Shape(e.Shape)})")
            .ToList();
        var unexpected = shapes.Keys.Concat(notTensors)
            .Where(k => !expectedKeys.Contains(k) && k is not ("fc.weight" or "fc.bias") && !k.EndsWith(".num_batches_tracked", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();
        if (missing.Count + misshapen.Count + unexpected.Count > 0)
        {
            var problems = new List<string>();
            if (missing.Count > 0)
                problems.Add($"missing keys: {List(missing)}");
            if (unexpected.Count > 0)
                problems.Add($"unexpected keys: {List(unexpected)}");
            if (misshapen.Count > 0)
                problems.Add($"keys with the wrong shape or type: {List(misshapen)}");
            throw new ArgumentException(
                $"'{path}' is not a state dict of torchvision's {ResNetBackbones.TorchvisionName(architecture)} (the architecture its keys " +
                $"suggest; resnet18 and wide_resnet50_2 are supported): {string.Join("; ", problems)}.", nameof(path));
        }
        return (architecture, values);
    }

    /// <summary>The file's entries, read as safetensors or as a zip-format PyTorch pickle according to its first bytes.</summary>
    private static IEnumerable<KeyValuePair<string, object?>> Load(string path)
    {
        byte[] head = new byte[9];
        int read;
        using (var stream = File.OpenRead(path))
            read = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        bool zip = read >= 4 && head[0] == (byte)'P' && head[1] == (byte)'K' && head[2] == 3 && head[3] == 4;
        bool safetensors = read == head.Length && head[8] == (byte)'{'
                           && BitConverter.ToUInt64(head, 0) < (ulong)new FileInfo(path).Length;
        if (!zip && !safetensors)
        {
            throw new ArgumentException(
                $"'{path}' is neither a PyTorch checkpoint in zip format (torch.save since PyTorch 1.6) nor a safetensors file. " +
                "Save the state dict with torch.save(model.state_dict(), path) or safetensors.torch.save_file.", nameof(path));
        }
        try
        {
            if (safetensors)
                return Safetensors.LoadStateDict(path).Select(p => new KeyValuePair<string, object?>(p.Key, p.Value)).ToList();
            Hashtable table = PyTorchUnpickler.UnpickleStateDict(path);
            return table.Cast<DictionaryEntry>().Select(e => new KeyValuePair<string, object?>(e.Key as string ?? $"{e.Key}", e.Value)).ToList();
        }
        catch (Exception e) when (e is not (IOException or UnauthorizedAccessException or OutOfMemoryException))
        {
            throw new ArgumentException(
                $"'{path}' cannot be read as a {(safetensors ? "safetensors file" : "PyTorch state dict")} ({e.GetType().Name}: {e.Message}). " +
                "Save the state dict itself (torch.save(model.state_dict(), path)), not the whole model or a dict around it.", nameof(path), e);
        }
    }

    private static string Shape(long[] shape) => $"[{string.Join(", ", shape)}]";

    private static string List(IReadOnlyList<string> items) =>
        items.Count <= ListedKeys ? string.Join(", ", items) : $"{string.Join(", ", items.Take(ListedKeys))} and {items.Count - ListedKeys} more";
}
