using System.Collections.Concurrent;
using System.CommandLine;
using AnomalyVision.Samples;
using System.Diagnostics;
using System.Net;
using InspectionService;
using Microsoft.ML;
using Microsoft.ML.Data;

/// <summary>
/// The inspection service under load: the service on a loopback port with a CFA and a DFM model, driven by N concurrent
/// clients for T seconds (at most M requests): throughput, latency percentiles, errors, 503s, and the process's memory
/// before and after. Beside it, in the same process and on the same models and images, the in-process throughput of the
/// two ways to score concurrent requests: one <c>Transform</c> per batch (what the service does) and a pool of prediction
/// engines, one per client; the HTTP overhead is the in-process batched throughput over the service's.
/// Options: <c>--clients 8 --seconds 20 --max-requests 5000 --batch 8 --workers 2 --models &lt;folder with cfa.zip and dfm.zip&gt;</c> (default:
/// the quickstart's artifacts/quickstart; without them, models trained here on the synthetic set at 128×128 with an
/// untrained ResNet-18, which scores at the same speed). Last line: <c>service_images_per_second=</c>.
/// </summary>
internal static class ServiceBenchmark
{
    private static readonly string[] Models = ["cfa", "dfm"];

    public static Command Command()
    {
        var defaults = new ServiceOptions();
        var clients = new Option<int>("--clients") { Description = "Concurrent clients.", DefaultValueFactory = _ => 8 }.AtLeast(1);
        var seconds = new Option<int>("--seconds") { Description = "How long the clients send, in seconds.", DefaultValueFactory = _ => 20 }.AtLeast(1);
        var maxRequests = new Option<int>("--max-requests") { Description = "Requests at the most, all clients together.", DefaultValueFactory = _ => 5000 }.AtLeast(1);
        var batch = new Option<int>("--batch") { Description = "Largest batch the service scores at once.", DefaultValueFactory = _ => defaults.MaxBatchSize }.AtLeast(1);
        var workers = new Option<int>("--workers") { Description = "The service's scoring workers.", DefaultValueFactory = _ => defaults.ScoringWorkers }.AtLeast(1);
        var models = new Option<string>("--models")
        {
            Description = "Folder with cfa.zip and dfm.zip (default: the quickstart's; without them, models trained here).",
            DefaultValueFactory = _ => Path.Combine("artifacts", "quickstart"),
        };
        var command = new Command("service", "The inspection service under load beside in-process scoring of the same models.")
        {
            clients, seconds, maxRequests, batch, workers, models,
        };
        command.SetAction((r, _) => Run(r.GetValue(clients), r.GetValue(seconds), r.GetValue(maxRequests), r.GetValue(batch),
            r.GetValue(workers), r.GetValue(models)!));
        return command;
    }

    private static async Task<int> Run(int clients, int seconds, int maxRequests, int batch, int workers, string modelsFolder)
    {
        string work = Path.Combine(Path.GetTempPath(), $"service-bench-{Environment.ProcessId}");
        try
        {
            string served = Path.Combine(work, "models");
            Directory.CreateDirectory(served);
            string[] images = PrepareModels(modelsFolder, served, work);
            byte[][] imageBytes = images.Select(File.ReadAllBytes).ToArray();
            Console.WriteLine($"{clients} clients for {seconds} s (at most {maxRequests} requests), models {string.Join(" and ", Models)} " +
                              $"from {modelsFolder}, {images.Length} images; the service scores batches of up to {batch} on {workers} worker(s); " +
                              $"{Environment.ProcessorCount} cores");

            await using var app = InspectionServiceApp.Create(
            [
                "--urls", "http://127.0.0.1:0", "--models", served, "--data", Path.Combine(work, "data"),
                "--Logging:LogLevel:Default=Warning", $"--Inspection:QueueCapacity={4 * clients}",
                $"--Inspection:MaxBatchSize={batch}", $"--Inspection:ScoringWorkers={workers}",
            ]);
            await app.StartAsync();
            using var http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()), Timeout = TimeSpan.FromSeconds(60) };
            foreach (string model in Models)
                for (int i = 0; i < 4; i++)
                    (await PostAsync(http, model, imageBytes[i % imageBytes.Length])).EnsureSuccessStatusCode();

            var (heapBefore, rssBefore) = Memory();
            var latencies = new ConcurrentBag<double>();
            int ok = 0, busy = 0, errors = 0, sent = 0;
            var deadline = Stopwatch.StartNew();
            async Task ClientAsync(int id)
            {
                for (int n = id; deadline.Elapsed.TotalSeconds < seconds && Interlocked.Increment(ref sent) <= maxRequests; n += clients)
                {
                    var clock = Stopwatch.StartNew();
                    try
                    {
                        using var response = await PostAsync(http, Models[n % Models.Length], imageBytes[n % imageBytes.Length]);
                        await response.Content.ReadAsByteArrayAsync();
                        if (response.StatusCode == HttpStatusCode.OK)
                        {
                            latencies.Add(clock.Elapsed.TotalMilliseconds);
                            Interlocked.Increment(ref ok);
                        }
                        else if (response.StatusCode == HttpStatusCode.ServiceUnavailable)
                        {
                            Interlocked.Increment(ref busy);
                            await Task.Delay(response.Headers.RetryAfter?.Delta ?? TimeSpan.FromSeconds(1));
                        }
                        else
                        {
                            Interlocked.Increment(ref errors);
                        }
                    }
                    catch (HttpRequestException)
                    {
                        Interlocked.Increment(ref errors);
                    }
                }
            }
            await Task.WhenAll(Enumerable.Range(0, clients).Select(i => Task.Run(() => ClientAsync(i))));
            double elapsed = deadline.Elapsed.TotalSeconds;
            var (heapAfter, rssAfter) = Memory();
            await app.StopAsync();

            double httpRate = ok / elapsed;
            var sorted = latencies.Order().ToArray();
            double Percentile(double p) => sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];

            // In process: the same models, images and alternation, for half the time each way.
            double batched = InProcess(served, images, clients, batch, workers, seconds / 2.0, pooledEngines: false);
            double engines = InProcess(served, images, clients, batch, workers, seconds / 2.0, pooledEngines: true);

            Console.WriteLine();
            Console.WriteLine("| measure | value |");
            Console.WriteLine("|---|---|");
            Console.WriteLine($"| requests answered 200 | {ok} in {elapsed:F1} s |");
            Console.WriteLine($"| throughput over HTTP | {httpRate:F1} images/s |");
            Console.WriteLine($"| latency p50 / p95 / p99 | {Percentile(0.50):F0} / {Percentile(0.95):F0} / {Percentile(0.99):F0} ms |");
            Console.WriteLine($"| errors | {errors} |");
            Console.WriteLine($"| 503 (queue full) | {busy} |");
            Console.WriteLine($"| memory at start → end (GC heap; resident) | {heapBefore / 1048576.0:F0} → {heapAfter / 1048576.0:F0} MB; {rssBefore / 1048576.0:F0} → {rssAfter / 1048576.0:F0} MB |");
            Console.WriteLine($"| in-process Transform, batches of {batch}, {workers} at a time | {batched:F1} images/s |");
            Console.WriteLine($"| in-process prediction engines, one per client ({clients}) | {engines:F1} images/s |");
            Console.WriteLine($"| HTTP overhead (in-process batched / HTTP) | {batched / httpRate:F2}× |");
            Console.WriteLine($"service_images_per_second={httpRate:F2}");
            return errors == 0 ? 0 : 1;
        }
        finally
        {
            if (Directory.Exists(work))
                Directory.Delete(work, recursive: true);
        }
    }

    private static Task<HttpResponseMessage> PostAsync(HttpClient http, string model, byte[] image)
    {
        var form = new MultipartFormDataContent { { new ByteArrayContent(image), "image", "part.png" } };
        return http.PostAsync($"/api/inspect/{model}", form);
    }

    private static (long Heap, long Resident) Memory()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        using var process = Process.GetCurrentProcess();
        return (GC.GetTotalMemory(forceFullCollection: true), process.WorkingSet64);
    }

    /// <summary>
    /// Copies cfa and dfm (with their threshold files) from <paramref name="source"/>, or trains them, into
    /// <paramref name="served"/>; returns the images to send.
    /// </summary>
    private static string[] PrepareModels(string source, string served, string work)
    {
        string data = Path.Combine(source, "data");
        if (Models.All(m => File.Exists(Path.Combine(source, m + ".zip"))) && Directory.Exists(data))
        {
            foreach (string file in Models.SelectMany(m => new[] { m + ".zip", m + ".threshold.json" }).Where(f => File.Exists(Path.Combine(source, f))))
                File.Copy(Path.Combine(source, file), Path.Combine(served, file));
            return Directory.GetFiles(data, "*.png", SearchOption.AllDirectories).Where(f => f.Contains($"{Path.DirectorySeparatorChar}test{Path.DirectorySeparatorChar}") && !f.Contains("ground_truth")).Order(StringComparer.Ordinal).ToArray();
        }
        Console.WriteLine($"No cfa.zip and dfm.zip in {source}: training both at 128×128 on the synthetic set with an untrained ResNet-18.");
        data = Path.Combine(work, "data-set");
        SyntheticDefectSet.Generate(data, new SyntheticDefectSetOptions { Categories = [SyntheticDefectSet.Washer], ImageSize = 128 });
        string backbone = Path.Combine(work, "resnet18-untrained.onnx");
        File.WriteAllBytes(backbone, ResNetBackbones.CreateUntrainedResNet18(seed: 0));
        var ml = new MLContext(seed: 0);
        IDataView train = ml.Data.LoadMvtecAd(data, SyntheticDefectSet.Washer, MvtecSplit.Train);
        using (var cfa = ml.Transforms.DetectCfaAnomalies(new CfaOptions { BackbonePath = backbone, InputColumnName = "ImagePath", ImageHeight = 128, ImageWidth = 128, Epochs = 1 }).Fit(train))
            ml.Model.SaveAtomically(cfa, train.Schema, Path.Combine(served, "cfa.zip"));
        using (var dfm = ml.Transforms.DetectDfmAnomalies(new DfmOptions { BackbonePath = backbone, InputColumnName = "ImagePath", ImageHeight = 128, ImageWidth = 128 }).Fit(train))
            ml.Model.SaveAtomically(dfm, train.Schema, Path.Combine(served, "dfm.zip"));
        return ml.Data.CreateEnumerable<ImagePathRow>(ml.Data.LoadMvtecAd(data, SyntheticDefectSet.Washer, MvtecSplit.Test), reuseRowObject: false)
            .Select(r => r.ImagePath).ToArray();
    }

    /// <summary>
    /// Images per second scored in process alternating cfa and dfm: through one Transform per batch on
    /// <paramref name="workers"/> threads (as the service's queue does), or through one prediction engine per caller,
    /// <paramref name="threads"/> callers.
    /// </summary>
    private static double InProcess(string served, string[] images, int threads, int batchSize, int workers, double seconds, bool pooledEngines)
    {
        var ml = new MLContext(seed: 0);
        var models = Models.Select(m => ml.Model.Load(Path.Combine(served, m + ".zip"), out _)).ToArray();
        try
        {
            // Warm-up.
            foreach (var model in models)
                ml.Data.CreateEnumerable<ScoreRow>(model.Transform(Rows(ml, images.Take(8))), reuseRowObject: true).Sum(r => r.Score);
            long scored = 0;
            var clock = Stopwatch.StartNew();
            if (pooledEngines)
            {
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
                {
                    var engines = models.Select(m => ml.Model.CreatePredictionEngine<ImagePathRow, ScoreRow>(m, new PredictionEngineOptions { OwnsTransformer = false })).ToArray();
                    for (int n = t; clock.Elapsed.TotalSeconds < seconds; n += threads)
                    {
                        engines[n % engines.Length].Predict(new ImagePathRow { ImagePath = images[n % images.Length] });
                        Interlocked.Increment(ref scored);
                    }
                    foreach (var engine in engines)
                        engine.Dispose();
                });
            }
            else
            {
                Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
                {
                    for (int n = w; clock.Elapsed.TotalSeconds < seconds; n += workers)
                    {
                        var batch = Enumerable.Range(n * batchSize, batchSize).Select(i => images[i % images.Length]);
                        Interlocked.Add(ref scored, ml.Data.CreateEnumerable<ScoreRow>(models[n % models.Length].Transform(Rows(ml, batch)), reuseRowObject: true).Count());
                    }
                });
            }
            return scored / clock.Elapsed.TotalSeconds;
        }
        finally
        {
            foreach (var model in models)
                (model as IDisposable)?.Dispose();
        }
    }

    private static IDataView Rows(MLContext ml, IEnumerable<string> paths) =>
        ml.Data.LoadFromEnumerable(paths.Select(p => new ImagePathRow { ImagePath = p }).ToList());

    private sealed class ImagePathRow
    {
        public string ImagePath { get; set; } = "";
    }

    private sealed class ScoreRow
    {
        public float Score { get; set; }
    }
}
