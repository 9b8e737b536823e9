using Google.Protobuf;
using Microsoft.ML.Anomaly.Vision.Onnx;

namespace Microsoft.ML.Anomaly.Vision.Tests.Backbones;

/// <summary>Shared models and inputs for the backbone tests.</summary>
internal static class BackboneTestModels
{
    private static readonly Lazy<byte[]> UntrainedResNet18Bytes = new(() => ResNetBackbones.CreateUntrainedResNet18(seed: 7));

    /// <summary>An untrained ResNet-18 (seed 7), built once per test run; do not modify the array.</summary>
    public static byte[] UntrainedResNet18 => UntrainedResNet18Bytes.Value;

    /// <summary>Uniform values in [-1, 1) from a seeded generator.</summary>
    public static float[] RandomImages(int count, int seed)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < values.Length; i++)
            values[i] = (float)(random.NextDouble() * 2 - 1);
        return values;
    }

    /// <summary>
    /// A ResNet-18 state dict with random convolutions and non-trivial batch-norm parameters and statistics,
    /// so that every part of a block changes the result.
    /// </summary>
    public static Dictionary<string, float[]> RandomResNet18StateDict(int seed)
    {
        var random = new Random(seed);
        var dict = new Dictionary<string, float[]>();
        foreach (var (key, shape) in ResNetBackbones.ParameterShapes(ResNetArchitecture.ResNet18))
        {
            long count = shape.Aggregate(1L, (a, b) => a * b);
            var v = new float[count];
            float Uniform(float lo, float hi) => (float)(lo + (hi - lo) * random.NextDouble());
            if (key.EndsWith(".weight", StringComparison.Ordinal) && shape.Length == 4)
            {
                // Uniform with the Kaiming fan-out variance: keeps activations of order one through the depth.
                float bound = MathF.Sqrt(3f * 2f / (shape[0] * shape[2] * shape[3]));
                for (int i = 0; i < v.Length; i++) v[i] = Uniform(-bound, bound);
            }
            else if (key.EndsWith(".weight", StringComparison.Ordinal) || key.EndsWith(".running_var", StringComparison.Ordinal))
            {
                for (int i = 0; i < v.Length; i++) v[i] = Uniform(0.5f, 1.5f);
            }
            else
            {
                for (int i = 0; i < v.Length; i++) v[i] = Uniform(-0.2f, 0.2f);
            }
            dict[key] = v;
        }
        return dict;
    }

    /// <summary>Parses model bytes.</summary>
    public static ModelProto Parse(byte[] bytes) => ModelProto.Parser.ParseFrom(bytes);

    /// <summary>Serializes a model.</summary>
    public static byte[] Serialize(ModelProto model) => model.ToByteArray();
}
