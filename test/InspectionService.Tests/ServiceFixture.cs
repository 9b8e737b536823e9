using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.ML;
using Microsoft.ML.Anomaly.Vision;
using Microsoft.ML.Data;

namespace InspectionService.Tests;

/// <summary>
/// Tiny detectors trained once for all tests (64×64 synthetic washers, an untrained ResNet-18): <c>cfa</c> saved with its
/// threshold (WithThreshold), <c>dfm</c> with a threshold file, and <c>dfm</c>'s second version <c>dfm-b</c> (another
/// backbone layer) for the swap tests; with the scores each transformer gives the test images in-process.
/// </summary>
[TestClass]
public static class ServiceFixture
{
    /// <summary>The models' input size.</summary>
    public const int Size = 64;

    private static readonly Lazy<Trained> Models = new(Train);

    /// <summary>Folder of this test run; deleted at the end.</summary>
    public static string RunFolder { get; } = Path.Combine(Path.GetTempPath(), "inspection-service-tests", Guid.NewGuid().ToString("N"));

    /// <summary>The test images: good and defective washers.</summary>
    public static IReadOnlyList<string> TestImages => Models.Value.TestImages;

    /// <summary>A saved model file by name: cfa, dfm, dfm-b.</summary>
    public static string Zip(string name) => Path.Combine(Models.Value.Folder, name + ".zip");

    /// <summary>SHA-256 of a saved model file.</summary>
    public static string Version(string name) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Zip(name))));

    /// <summary>The score the saved model <paramref name="name"/> gives <paramref name="image"/> in-process.</summary>
    public static float ExpectedScore(string name, string image) => Models.Value.Scores[name][image];

    /// <summary>The threshold saved in or beside model <paramref name="name"/>.</summary>
    public static float Threshold(string name) => Models.Value.Thresholds[name];

    /// <summary>A new models folder holding cfa (with its threshold) and dfm (version A, with its threshold file).</summary>
    public static string NewModelsFolder()
    {
        string folder = NewFolder();
        File.Copy(Zip("cfa"), Path.Combine(folder, "cfa.zip"));
        File.Copy(Zip("dfm"), Path.Combine(folder, "dfm.zip"));
        File.Copy(Path.ChangeExtension(Zip("dfm"), ".threshold.json"), Path.Combine(folder, "dfm.threshold.json"));
        return folder;
    }

    /// <summary>A new empty folder under the run's folder.</summary>
    public static string NewFolder()
    {
        string folder = Path.Combine(RunFolder, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        return folder;
    }

    /// <summary>A service over <paramref name="models"/> and <paramref name="data"/>, with extra settings.</summary>
    public static WebApplicationFactory<Program> NewService(string models, string data, params (string Key, string Value)[] settings) =>
        NewService(models, data, null, settings);

    /// <summary>A service over <paramref name="models"/> and <paramref name="data"/>, with its services changed by <paramref name="services"/>.</summary>
    public static WebApplicationFactory<Program> NewService(string models, string data, Action<IServiceCollection>? services,
        params (string Key, string Value)[] settings) =>
        new WebApplicationFactory<Program>().WithWebHostBuilder(builder =>
        {
            builder.UseSetting("Inspection:ModelsFolder", models);
            builder.UseSetting("Inspection:DataFolder", data);
            builder.UseSetting("Logging:LogLevel:Default", "Warning");
            foreach (var (key, value) in settings)
                builder.UseSetting("Inspection:" + key, value);
            if (services is not null)
                builder.ConfigureTestServices(services);
        });

    /// <summary>Replaces <paramref name="target"/> by <paramref name="source"/>'s bytes in one rename, as a deployment would.</summary>
    public static void Replace(string target, byte[] source)
    {
        string temp = target + ".incoming";
        File.WriteAllBytes(temp, source);
        File.Move(temp, target, overwrite: true);
    }

    /// <summary>Waits until <paramref name="condition"/> holds (checked every 50 ms, at most 60 s).</summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(60))
                Assert.Fail($"Waited 60 s for {what}.");
            await Task.Delay(50);
        }
    }

    /// <summary>Posts <paramref name="content"/> as the field <paramref name="field"/> of a form.</summary>
    public static Task<HttpResponseMessage> PostImageAsync(HttpClient client, string model, byte[] content, string fileName = "part.png",
        string field = "image", string query = "")
    {
        var form = new MultipartFormDataContent { { new ByteArrayContent(content), field, fileName } };
        return client.PostAsync($"/api/inspect/{model}{query}", form);
    }

    /// <summary>Reads an inspection answer.</summary>
    public static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        await response.Content.ReadFromJsonAsync<JsonElement>();

    /// <summary>Deletes the run's folder.</summary>
    [AssemblyCleanup]
    public static void Cleanup()
    {
        if (Directory.Exists(RunFolder))
            Directory.Delete(RunFolder, recursive: true);
    }

    private static Trained Train()
    {
        string folder = NewFolder();
        string data = Path.Combine(folder, "data");
        SyntheticDefectSet.Generate(data, new SyntheticDefectSetOptions
        {
            Categories = [SyntheticDefectSet.Washer], ImageSize = Size, TrainCount = 12, TestGoodCount = 3, TestDefectCount = 3,
        });
        string backbone = Path.Combine(folder, "resnet18-untrained.onnx");
        File.WriteAllBytes(backbone, ResNetBackbones.CreateUntrainedResNet18(seed: 0));
        var ml = new MLContext(seed: 0);
        IDataView train = ml.Data.LoadMvtecAd(data, SyntheticDefectSet.Washer, MvtecSplit.Train);
        IDataView test = ml.Data.LoadMvtecAd(data, SyntheticDefectSet.Washer, MvtecSplit.Test);
        var images = ml.Data.CreateEnumerable<LabelledImage>(test, reuseRowObject: false).ToList();
        string[] paths = images.Select(r => r.ImagePath).ToArray();
        bool[] labels = images.Select(r => r.Label).ToArray();

        var scores = new Dictionary<string, Dictionary<string, float>>();
        var thresholds = new Dictionary<string, float>();
        void Save(string name, ImageAnomalyTransformerBase model, bool thresholdInModel)
        {
            float[] s = Scores(ml, model, test);
            float threshold = AdaptiveThreshold.Compute(s, labels);
            thresholds[name] = threshold;
            string zip = Path.Combine(folder, name + ".zip");
            if (thresholdInModel)
                ml.Model.SaveAtomically(model.WithThreshold(threshold), train.Schema, zip);
            else
            {
                ml.Model.SaveAtomically(model, train.Schema, zip);
                File.WriteAllText(Path.ChangeExtension(zip, ".threshold.json"), JsonSerializer.Serialize(new { threshold }));
            }
            // The expected scores come from the saved file, loaded as the service loads it.
            using var loaded = (BackboneAnomalyTransformerBase)new MLContext().Model.Load(zip, out _);
            scores[name] = paths.Zip(Scores(ml, loaded, test)).ToDictionary(p => p.First, p => p.Second);
            (model as IDisposable)?.Dispose();
        }
        Save("cfa", (ImageAnomalyTransformerBase)ml.Transforms.DetectCfaAnomalies(new CfaOptions
        { BackbonePath = backbone, InputColumnName = "ImagePath", ImageHeight = Size, ImageWidth = Size, Epochs = 1, BatchSize = 8 }).Fit(train), true);
        Save("dfm", (ImageAnomalyTransformerBase)ml.Transforms.DetectDfmAnomalies(new DfmOptions
        { BackbonePath = backbone, InputColumnName = "ImagePath", ImageHeight = Size, ImageWidth = Size, Layer = "layer2" }).Fit(train), false);
        Save("dfm-b", (ImageAnomalyTransformerBase)ml.Transforms.DetectDfmAnomalies(new DfmOptions
        { BackbonePath = backbone, InputColumnName = "ImagePath", ImageHeight = Size, ImageWidth = Size, Layer = "layer3" }).Fit(train), false);
        return new Trained(folder, paths, scores, thresholds);
    }

    private static float[] Scores(MLContext ml, ITransformer model, IDataView data) =>
        ml.Data.CreateEnumerable<ScoredRow>(model.Transform(data), reuseRowObject: false).Select(r => r.Score).ToArray();

    private sealed record Trained(string Folder, string[] TestImages, Dictionary<string, Dictionary<string, float>> Scores, Dictionary<string, float> Thresholds);

    private sealed class LabelledImage
    {
        public string ImagePath { get; set; } = "";

        public bool Label { get; set; }
    }

    private sealed class ScoredRow
    {
        public float Score { get; set; }
    }
}
