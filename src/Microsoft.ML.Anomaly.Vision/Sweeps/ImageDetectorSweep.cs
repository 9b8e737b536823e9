using System.Diagnostics;
using Anomaly.Vision.Training;
using Microsoft.ML.Anomaly.Vision.Common;
using Microsoft.ML.Anomaly.Vision.Evaluation;
using Microsoft.ML.Anomaly.Vision.Sweeps;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// An AutoML-style sweep over the image anomaly detectors and their settings. <see cref="Fit"/> runs the trials,
/// validates each on a labelled validation set or, without one, on synthetic defects pasted onto held-out training
/// images, and returns the leaderboard and the best fitted model. Create it with
/// <c>mlContext.AnomalyDetection.SweepImageDetectors(options)</c>.
/// </summary>
/// <remarks>
/// Trials run grouped by input size: the training and validation images of a size go through the frozen backbone once,
/// for the union of the layers that size's trials read, and every trial of the size trains and scores on those stored
/// features (trials differ only after the backbone). A trial's <see cref="SweepTrialResult.FitSeconds"/> is what a
/// standalone Fit of it would cost; the sweep's wall time is below their sum by the extractions it shares.
/// A trial that throws (other than on cancellation) is recorded with its error and ranks last.
/// </remarks>
public sealed class ImageDetectorSweep
{
    // The most configurations a random search draws, whatever MaxTrials says.
    private const long MaxRandomDraws = 1_000_000;

    private readonly IHost _host;
    private readonly ImageDetectorSweepOptions _options;
    private readonly int? _contextSeed;

    internal ImageDetectorSweep(IHostEnvironment env, ImageDetectorSweepOptions options)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(nameof(options));
        _host = env.Register(nameof(ImageDetectorSweep));
        _options = options;
        _contextSeed = (env as IHostEnvironmentInternal)?.Seed;
    }

    /// <summary>
    /// Runs the sweep. Without <paramref name="validation"/>, <see cref="ImageDetectorSweepOptions.HoldOutFraction"/> of the
    /// training images are held out and half of them get synthetic defects (<see cref="SyntheticAnomalyGenerator"/>).
    /// </summary>
    /// <param name="train">Images of good parts in <see cref="ImageDetectorSweepOptions.InputColumnName"/>.</param>
    /// <param name="validation">
    /// Labelled validation images (the image column, <see cref="ImageDetectorSweepOptions.LabelColumnName"/> and, for pixel
    /// metrics, <see cref="ImageDetectorSweepOptions.MaskPathColumnName"/>), or null for the synthetic split.
    /// </param>
    /// <returns>The leaderboard and the best model; dispose it to release the kept models.</returns>
    /// <exception cref="ArgumentException">Bad data or a search-space configuration a detector rejects (the message names the trial).</exception>
    /// <exception cref="OperationCanceledException">The sweep was cancelled; nothing was written.</exception>
    public SweepResult Fit(IDataView train, IDataView? validation = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        var clock = Stopwatch.StartNew();
        using IChannel channel = _host.Start("Sweep");
        if (_options.OutputFolder is string outputFolder)
            SweepReport.CheckWritable(outputFolder);
        int stale = ProcessTempFolder.DeleteStale(SweepValidationSet.TemporaryFolderPrefix);
        if (stale > 0)
            channel.Info($"Deleted {stale} temporary folder(s) left in {Path.GetTempPath()} by sweeps whose process was killed.");
        CancellationToken cancellation = _options.CancellationToken;
        int seed = _options.Seed ?? _contextSeed ?? 0;
        var trials = PlanTrials(seed);
        var (backboneBytes, backboneName) = ReadBackbone();
        channel.Info($"Sweep of {trials.Count} trials ({_options.Strategy} search, seed {seed}), maximising {_options.Metric}.");

        var results = new List<SweepTrialResult>();
        var extractions = new List<SweepFeatureExtraction>();
        BestTrial? best = null;
        SweepFeatures? currentFeatures = null;
        bool budgetReached = false;
        try
        {
            using SweepValidationSet data = SweepValidationSet.Create(_host, train, validation, _options, seed);
            channel.Info(data.Synthetic
                ? $"Validation: {data.Count} held-out training images, {data.Labels.Count(l => l)} with synthetic defects; training on the other images."
                : $"Validation: the given set of {data.Count} images.");
            foreach (var group in trials.GroupBy(t => t.Size))
            {
                if (budgetReached = OverBudget(clock))
                    break;
                string[] layers = group.SelectMany(t => t.Options.BackboneLayers).Distinct(StringComparer.Ordinal).ToArray();
                Report("features", 0, trials.Count, $"backbone features at {group.Key} px ({string.Join(", ", layers)})");
                using SweepFeatures features = currentFeatures = SweepFeatures.Extract(channel, backboneBytes, layers, group.Key, data, _options,
                    BackboneFeatureExtraction.TrainingProgressSink(channel, null));
                extractions.Add(new SweepFeatureExtraction(group.Key, backboneName, layers, features.Train.Count,
                    features.Validation.Count, features.TrainSeconds + features.ValidationSeconds));
                var rungZero = new List<(PlannedTrial Trial, SweepTrialResult Result)>();
                foreach (var trial in group)
                {
                    if (budgetReached = OverBudget(clock))
                        break;
                    SweepTrialResult result = Run(trial);
                    if (trial.FullEpochs is not null)
                        rungZero.Add((trial, result));
                }

                // Successive halving: the best 1/rate of the epoch-trained trials run again with their full epochs.
                int rate = _options.SuccessiveHalvingRate;
                int promotions = rate >= 2 ? (rungZero.Count + rate - 1) / rate : 0;
                var promoted = SweepResult.Rank(rungZero.Select(r => r.Result).Where(r => r.MetricValue.HasValue)).Take(promotions).ToList();
                foreach (var (trial, _) in rungZero.Where(r => promoted.Contains(r.Result)).OrderBy(r => promoted.IndexOf(r.Result)).ToList())
                {
                    if (budgetReached = OverBudget(clock))
                        break;
                    Run(CreateTrial(trial.Size, trial.Plan, seed, trial.FullEpochs));
                }
                if (budgetReached)
                    break;
            }

            SweepTrialResult Run(PlannedTrial trial)
            {
                cancellation.ThrowIfCancellationRequested();
                _host.CheckAlive();
                int number = results.Count + 1;
                Report("trial", number, trials.Count, trial.Description);
                var (result, scores, maps) = RunTrial(channel, number, trials.Count, trial, backboneBytes, currentFeatures!, data);
                results.Add(result);
                if (result.MetricValue.HasValue && (best is null || SweepResult.Rank([best.Result, result]).First() == result))
                {
                    if (best is not null && !_options.KeepAllModels)
                        Release(best.Result);
                    best = new BestTrial(result, scores!, maps!);
                }
                else if (!_options.KeepAllModels)
                {
                    Release(result);
                }
                Report("result", number, trials.Count, result.Error is null ? $"{_options.Metric} {result.MetricValue:F4}: {result.Description}" : $"failed: {result.Error}", result);
                return result;
            }

            if (budgetReached)
                channel.Warning($"The time budget of {_options.TimeBudget} was spent after {results.Count} of {trials.Count} trials.");

            var sweep = new SweepResult(results, _options.Metric, data.Synthetic, data.Synthetic ? CountRows(data.Train) : CountRows(train),
                data.Count, seed, extractions, clock.Elapsed.TotalSeconds, budgetReached);
            if (_options.OutputFolder is string folder)
                SweepReport.Write(folder, sweep, data, best?.Scores, best?.Maps, _host, train.Schema, _options.OverlayCount, cancellation);
            sweep.WallSeconds = clock.Elapsed.TotalSeconds;
            channel.Info(sweep.ToLeaderboardString(10));
            return sweep;
        }
        catch
        {
            foreach (SweepTrialResult result in results)
                Release(result);
            throw;
        }
    }

    private static void Release(SweepTrialResult result)
    {
        result.Model?.Release();
        result.Model = null;
    }

    private static int CountRows(IDataView data)
    {
        if (data.GetRowCount() is long n)
            return (int)n;
        int count = 0;
        using var cursor = data.GetRowCursor([]);
        while (cursor.MoveNext())
            count++;
        return count;
    }

    /// <summary>The backbone's ONNX bytes (read once for all trials) and its name.</summary>
    private (byte[] Bytes, string Name) ReadBackbone()
    {
        if (_options.BackbonePath is string path)
        {
            if (!File.Exists(path))
                throw new FileNotFoundException($"The backbone file '{path}' does not exist.", path);
            return (File.ReadAllBytes(path), Path.GetFileName(path));
        }
        BackboneModel model = _options.Backbone ?? ImageNetBackbones.ResNet18();
        return (model.GetOnnxBytes(), model.Description.Name);
    }

    private bool OverBudget(Stopwatch clock) => _options.TimeBudget is TimeSpan budget && clock.Elapsed >= budget;

    private void Report(string stage, int trial, int trials, string message, SweepTrialResult? result = null) =>
        _options.Progress?.Report(new SweepProgress(stage, trial, trials, message, result));

    /// <summary>The trials to run, grouped by input size (sizes in the order they first appear), each with checked options.</summary>
    private List<PlannedTrial> PlanTrials(int seed)
    {
        var plans = new List<(int Size, TrialPlan Plan)>();
        if (_options.Strategy == SweepStrategy.Grid)
        {
            foreach (int size in _options.ImageSize.GridValues)
                foreach (DetectorSearchSpace space in _options.SearchSpace)
                    foreach (TrialPlan plan in space.Grid())
                        if (plans.Count < _options.MaxTrials)
                            plans.Add((size, plan));
        }
        else
        {
            var random = new DeterministicRandom(DeterministicRandom.Combine(DeterministicRandom.HashString("sweep-search"), (ulong)(uint)seed));
            var seen = new HashSet<string>(StringComparer.Ordinal);
            // Draws until MaxTrials distinct configurations are found, or MaxTrials × 100 draws (at most MaxRandomDraws)
            // found no more: a search space smaller than MaxTrials ends the search.
            long draws = Math.Min((long)_options.MaxTrials * 100, MaxRandomDraws);
            for (long attempt = 0; plans.Count < _options.MaxTrials && attempt < draws; attempt++)
            {
                int size = _options.ImageSize.Sample(ref random);
                TrialPlan plan = _options.SearchSpace[random.NextInt(_options.SearchSpace.Count)].Sample(ref random);
                if (seen.Add(size + "px " + plan.Key))
                    plans.Add((size, plan));
            }
        }

        var trials = new List<PlannedTrial>();
        foreach (var (size, plan) in plans.GroupBy(p => p.Size).SelectMany(g => g))
        {
            PlannedTrial trial = CreateTrial(size, plan, seed, epochs: null);
            if (_options.SuccessiveHalvingRate >= 2 && Epochs(trial.Options) is int full && full > 1)
                trial = CreateTrial(size, plan, seed, (full + _options.SuccessiveHalvingRate - 1) / _options.SuccessiveHalvingRate) with { FullEpochs = full };
            trials.Add(trial);
        }
        return trials;
    }

    /// <summary>A trial's options: the plan's settings (with <paramref name="epochs"/> when given) and the sweep's shared options, checked.</summary>
    private PlannedTrial CreateTrial(int size, TrialPlan plan, int seed, int? epochs)
    {
        BackboneDetectorOptions options = plan.CreateOptions();
        options.Backbone = _options.Backbone;
        options.BackbonePath = _options.BackbonePath;
        options.InputColumnName = _options.InputColumnName;
        options.ImageHeight = size;
        options.ImageWidth = size;
        options.Device = _options.Device;
        options.BatchSize = _options.BatchSize;
        options.BackboneThreads = _options.BackboneThreads;
        options.MaxImagePixels = _options.MaxImagePixels;
        options.Seed = seed;
        options.CancellationToken = _options.CancellationToken;
        var settings = plan.Settings;
        if (epochs is int e)
        {
            if (options is CfaOptions cfa)
                cfa.Epochs = e;
            else if (options is CflowOptions cflow)
                cflow.Epochs = e;
            string text = SearchParameter.Format(e);
            settings = settings.Select(s => s.Key == nameof(CfaOptions.Epochs) ? new KeyValuePair<string, string>(s.Key, text) : s).ToArray();
        }
        try
        {
            options.ValidateAll("options");
        }
        catch (ArgumentException ex)
        {
            throw new ArgumentException($"The search space gives a configuration the detector rejects ({size} px {plan.Key}): {ex.Message}", "options", ex);
        }
        return new PlannedTrial(size, plan, options, settings, FullEpochs: null);
    }

    private static int? Epochs(BackboneDetectorOptions options) => options switch
    {
        CfaOptions cfa => cfa.Epochs,
        CflowOptions cflow => cflow.Epochs,
        _ => null,
    };

    private (SweepTrialResult Result, float[]? Scores, float[]? Maps) RunTrial(IChannel channel, int number, int total, PlannedTrial trial,
        byte[] backboneBytes, SweepFeatures features, SweepValidationSet data)
    {
        var result = new SweepTrialResult(number, trial.Plan.Detector, trial.Size, trial.Settings);
        BackboneDetectorOptions options = trial.Options;
        IReadOnlyList<string> layers = options.BackboneLayers;
        var progress = BackboneFeatureExtraction.TrainingProgressSink(channel, new BackboneFeatureExtraction.ForwardingProgress(p =>
            Report("training", number, total, double.IsNaN(p.Loss) ? $"{p.Stage} {p.Step}/{p.Steps}" : $"{p.Stage} {p.Step}/{p.Steps}, loss {p.Loss:G4}")));
        BackboneAnomalyTransformerBase? model = null;
        var clock = Stopwatch.StartNew();
        try
        {
            OnnxBackbone backbone = OnnxBackbone.FromBytes(backboneBytes, layers, options.BackboneThreads, preferCuda: options.Device != ComputeDevice.Cpu);
            try
            {
                model = FitOnFeatures(options, backbone, features.Select(features.Train, layers), progress);
            }
            catch
            {
                backbone.Dispose();
                throw;
            }
            result.TrainSeconds = clock.Elapsed.TotalSeconds;
            result.FitSeconds = features.TrainSeconds + result.TrainSeconds;

            clock.Restart();
            var (scores, maps) = Score(model, features, layers);
            result.ValidationSeconds = features.ValidationSeconds + clock.Elapsed.TotalSeconds;
            result.ScoringImagesPerSecond = features.Validation.Count / result.ValidationSeconds;
            result.Metrics = Evaluate(scores, maps, features, data, model.ProducesMap);
            result.MetricValue = _options.Metric switch
            {
                SweepMetric.ImageAuroc => result.Metrics.ImageAuroc,
                SweepMetric.ImageF1Max => result.Metrics.ImageF1Max,
                SweepMetric.PixelAuroc => result.Metrics.PixelAuroc,
                SweepMetric.PixelF1Max => result.Metrics.PixelF1Max,
                _ => result.Metrics.Aupro,
            };
            result.Model = model;
            return (result, scores, maps);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            model?.Release();
            result.Error = e.Message;
            result.TrainSeconds = clock.Elapsed.TotalSeconds;
            channel.Warning($"Trial {number} ({trial.Description}) failed: {e.Message}");
            return (result, null, null);
        }
        catch
        {
            model?.Release();
            throw;
        }
    }

    private BackboneAnomalyTransformerBase FitOnFeatures(BackboneDetectorOptions options, OnnxBackbone backbone, IFeatureSource features,
        IProgress<TrainingProgress> progress)
    {
        var run = new FitRun(options.Seed ?? 0, options.Device, CudaDeviceIndex: 0, progress, _options.CancellationToken);
        return options switch
        {
            CfaOptions cfa => new CfaEstimator(_host, cfa).FitOnFeatures(backbone, features, run),
            DfmOptions dfm => new DfmEstimator(_host, dfm).FitOnFeatures(backbone, features, run),
            CflowOptions cflow => new CflowEstimator(_host, cflow).FitOnFeatures(backbone, features, run),
            _ => throw new InvalidOperationException($"No sweep support for {options.GetType().Name}."),
        };
    }

    /// <summary>Scores every validation image from the stored features; maps are empty when the detector makes none.</summary>
    private (float[] Scores, float[] Maps) Score(BackboneAnomalyTransformerBase model, SweepFeatures features, IReadOnlyList<string> layers)
    {
        IFeatureSource source = features.Select(features.Validation, layers);
        int count = source.Count, pixels = features.Size * features.Size, batchSize = _options.BatchSize;
        var scores = new float[count];
        var maps = model.ProducesMap ? new float[(long)count * pixels] : [];
        for (int start = 0; start < count; start += batchSize)
        {
            _options.CancellationToken.ThrowIfCancellationRequested();
            int batch = Math.Min(batchSize, count - start);
            var layerMaps = source.Layers.Select(s => new float[batch * s.Size]).ToArray();
            for (int image = 0; image < batch; image++)
                for (int layer = 0; layer < layerMaps.Length; layer++)
                {
                    int size = source.Layers[layer].Size;
                    source.Read(start + image, layer, layerMaps[layer].AsSpan(image * size, size));
                }
            model.ScoreLayerMaps(layerMaps, batch, scores.AsSpan(start, batch),
                model.ProducesMap ? maps.AsSpan(start * pixels, batch * pixels) : Span<float>.Empty);
        }
        return (scores, maps);
    }

    private static ImageAnomalyMetrics Evaluate(float[] scores, float[] maps, SweepFeatures features, SweepValidationSet data, bool producesMap)
    {
        PixelScoreHistogram? histogram = null;
        if (producesMap && features.Masks is bool[][] masks)
        {
            histogram = new PixelScoreHistogram();
            int pixels = features.Size * features.Size;
            for (int i = 0; i < scores.Length; i++)
                histogram.Add(maps.AsSpan(i * pixels, pixels), masks[i], features.Size, features.Size);
        }
        return AnomalyVisionEvaluationCatalog.ComputeMetrics(scores, data.Labels, histogram);
    }

    /// <summary>A trial to run; <paramref name="FullEpochs"/> is set on a successive-halving trial run with fewer epochs first.</summary>
    private sealed record PlannedTrial(int Size, TrialPlan Plan, BackboneDetectorOptions Options,
        IReadOnlyList<KeyValuePair<string, string>> Settings, int? FullEpochs)
    {
        public string Description => $"{Plan.Detector} {Size} px " + string.Join(' ', Settings.Select(s => s.Key + "=" + s.Value));
    }

    /// <summary>The best trial so far, with its validation scores and maps (for the report's overlays).</summary>
    private sealed record BestTrial(SweepTrialResult Result, float[] Scores, float[] Maps);
}
