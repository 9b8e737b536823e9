using System.Threading.Channels;
using Microsoft.Extensions.Options;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace InspectionService;

/// <summary>What scoring one image gives: the score and, when the detector makes one, the anomaly map.</summary>
public sealed record ScoredImage(float Score, float[]? Map);

/// <summary>
/// The bounded queue between requests and the detectors, and the workers that empty it.
/// </summary>
/// <remarks>
/// Design: a prediction engine scores one row at a time, so eight concurrent requests through a pool of engines make
/// eight backbone runs of one image each; a worker instead takes whatever is queued (up to
/// <see cref="ServiceOptions.MaxBatchSize"/>), groups it by model version, and scores each group with one
/// <c>Transform</c>, which decodes the group's images in parallel and runs the backbone once on the batch (the load
/// benchmark measures both ways), with <see cref="ServiceOptions.ScoringWorkers"/> workers at a time. The queue holds at most <see cref="ServiceOptions.QueueCapacity"/> images; a request
/// that finds it full is refused at once (503), so memory does not grow with the load. Jobs carry their model version,
/// leased by the request, so a swap mid-queue changes nothing for them. When a batch fails, its images are scored
/// one by one so that one bad image fails only its own request.
/// </remarks>
public sealed class InspectionQueue
{
    private readonly Channel<Job> _channel;
    private readonly ServiceOptions _options;
    private readonly ILogger<InspectionQueue> _log;
    private readonly MLContext _ml = new(seed: 0);

    /// <summary>Creates the queue with the configured capacity.</summary>
    public InspectionQueue(IOptions<ServiceOptions> options, ILogger<InspectionQueue> log)
    {
        _options = options.Value;
        _log = log;
        _channel = Channel.CreateBounded<Job>(new BoundedChannelOptions(_options.QueueCapacity)
        {
            SingleReader = _options.ScoringWorkers == 1,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    /// <summary>Images waiting to be scored.</summary>
    public int Length => _channel.Reader.Count;

    /// <summary>
    /// Queues <paramref name="imagePath"/> for <paramref name="version"/> (whose lease the caller holds until the task ends);
    /// returns null when the queue is full.
    /// </summary>
    public Task<ScoredImage>? TryEnqueue(DetectorVersion version, string imagePath, CancellationToken cancellationToken)
    {
        var job = new Job(version, imagePath, new TaskCompletionSource<ScoredImage>(TaskCreationOptions.RunContinuationsAsynchronously), cancellationToken);
        return _channel.Writer.TryWrite(job) ? job.Done.Task : null;
    }

    /// <summary>The workers: score queued images until <paramref name="stoppingToken"/> is cancelled (<see cref="InspectionQueueWorker"/> runs them).</summary>
    public async Task RunAsync(CancellationToken stoppingToken)
    {
        await Task.WhenAll(Enumerable.Range(0, _options.ScoringWorkers).Select(_ => Task.Run(() => WorkAsync(stoppingToken), CancellationToken.None)));
        _channel.Writer.TryComplete();
        while (_channel.Reader.TryRead(out Job? left))
            left.Done.TrySetCanceled(stoppingToken);
    }

    private async Task WorkAsync(CancellationToken stoppingToken)
    {
        var batch = new List<Job>(_options.MaxBatchSize);
        try
        {
            while (await _channel.Reader.WaitToReadAsync(stoppingToken))
            {
                batch.Clear();
                while (batch.Count < _options.MaxBatchSize && _channel.Reader.TryRead(out Job? job))
                {
                    if (job.Cancellation.IsCancellationRequested)
                        job.Done.TrySetCanceled(job.Cancellation);
                    else
                        batch.Add(job);
                }
                foreach (var group in batch.GroupBy(j => j.Version))
                    ScoreGroup(group.Key, group.ToList());
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private void ScoreGroup(DetectorVersion version, List<Job> jobs)
    {
        try
        {
            var results = Score(version, jobs.Select(j => j.ImagePath).ToList());
            for (int i = 0; i < jobs.Count; i++)
                jobs[i].Done.TrySetResult(results[i]);
        }
        catch (Exception batchError) when (jobs.Count > 1)
        {
            _log.LogWarning("Scoring a batch of {Count} images with model {Model} failed ({Error}); scoring them one by one", jobs.Count, version.Name, batchError.Message);
            foreach (var job in jobs)
            {
                try
                {
                    job.Done.TrySetResult(Score(version, [job.ImagePath])[0]);
                }
                catch (Exception ex)
                {
                    job.Done.TrySetException(ex);
                }
            }
        }
        catch (Exception ex)
        {
            jobs[0].Done.TrySetException(ex);
        }
    }

    /// <summary>Scores images with one Transform of <paramref name="version"/>'s detector.</summary>
    private List<ScoredImage> Score(DetectorVersion version, List<string> paths)
    {
        var detector = version.Detector;
        var schema = SchemaDefinition.Create(typeof(ImageRow));
        schema[0].ColumnName = detector.InputColumnName;
        IDataView input = _ml.Data.LoadFromEnumerable(paths.Select(p => new ImageRow { ImagePath = p }), schema);
        IDataView scored = detector.Transform(input);
        DataViewSchema.Column scoreColumn = scored.Schema[detector.ScoreColumnName];
        DataViewSchema.Column? mapColumn = detector.AnomalyMapColumnName is string map ? scored.Schema[map] : null;
        var results = new List<ScoredImage>(paths.Count);
        using DataViewRowCursor cursor = scored.GetRowCursor(mapColumn is { } m ? [scoreColumn, m] : [scoreColumn]);
        ValueGetter<float> getScore = cursor.GetGetter<float>(scoreColumn);
        ValueGetter<VBuffer<float>>? getMap = mapColumn is { } mc ? cursor.GetGetter<VBuffer<float>>(mc) : null;
        float score = 0;
        VBuffer<float> mapValues = default;
        while (cursor.MoveNext())
        {
            getScore(ref score);
            float[]? values = null;
            if (getMap is not null)
            {
                getMap(ref mapValues);
                values = mapValues.DenseValues().ToArray();
            }
            results.Add(new ScoredImage(score, values));
        }
        return results;
    }

    private sealed record Job(DetectorVersion Version, string ImagePath, TaskCompletionSource<ScoredImage> Done, CancellationToken Cancellation);

    private sealed class ImageRow
    {
        public string ImagePath { get; set; } = "";
    }
}

/// <summary>Runs the queue's worker for the lifetime of the service.</summary>
public sealed class InspectionQueueWorker(InspectionQueue queue) : BackgroundService
{
    /// <inheritdoc />
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => queue.RunAsync(stoppingToken);
}
