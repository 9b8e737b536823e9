using Anomaly.Vision.Training;

namespace Anomaly.Vision.Training.Tests.Cfa;

/// <summary>Small synthetic backbone features for the CFA and feature-store tests.</summary>
internal static class CfaTestData
{
    /// <summary>Two layers: 8 channels on 8×8 and 4 channels on 4×4.</summary>
    public static readonly LayerShape[] TinyLayers = { new(8, 8, 8), new(4, 4, 4) };

    /// <summary>Per image, one CHW array per layer, values in [0, 1) with a per-channel offset so that channels differ.</summary>
    public static float[][][] Maps(int images, int seed, IReadOnlyList<LayerShape>? layers = null)
    {
        layers ??= TinyLayers;
        var random = new Random(seed);
        var result = new float[images][][];
        for (int i = 0; i < images; i++)
        {
            result[i] = new float[layers.Count][];
            for (int l = 0; l < layers.Count; l++)
            {
                var s = layers[l];
                var map = new float[s.Size];
                for (int j = 0; j < map.Length; j++)
                    map[j] = (float)random.NextDouble() + 0.25f * (j / (s.Height * s.Width) % 3);
                result[i][l] = map;
            }
        }
        return result;
    }

    public static InMemoryFeatureSource Source(float[][][] maps, IReadOnlyList<LayerShape>? layers = null)
    {
        var source = new InMemoryFeatureSource(layers ?? TinyLayers);
        foreach (var image in maps)
            source.Add(image);
        return source;
    }

    public static CfaTrainingOptions Options(int epochs = 3, int batchSize = 4, int seed = 0) => new()
    {
        Epochs = epochs,
        BatchSize = batchSize,
        Seed = seed,
        Device = ComputeDevice.Cpu,
    };

    /// <summary>Records reports synchronously (Progress&lt;T&gt; would post them to the thread pool).</summary>
    public sealed class Recorder : IProgress<TrainingProgress>
    {
        public List<TrainingProgress> Reports { get; } = new();

        public Action<TrainingProgress>? OnReport { get; set; }

        public void Report(TrainingProgress value)
        {
            Reports.Add(value);
            OnReport?.Invoke(value);
        }
    }
}
