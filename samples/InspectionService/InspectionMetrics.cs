using System.Diagnostics.Metrics;

namespace InspectionService;

/// <summary>
/// The service's OpenTelemetry instruments (meter <see cref="MeterName"/>), exported at <c>/metrics</c> for Prometheus:
/// inspections by model and outcome, their latency, anomalies by model, and the queue's length.
/// </summary>
public sealed class InspectionMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "AnomalyVision.InspectionService";

    private readonly Meter _meter;
    private readonly Counter<long> _requests;
    private readonly Histogram<double> _duration;
    private readonly Counter<long> _anomalies;

    /// <summary>Creates the instruments; the queue gauge reads <paramref name="queue"/>.</summary>
    public InspectionMetrics(IMeterFactory meters, InspectionQueue queue)
    {
        _meter = meters.Create(MeterName);
        _requests = _meter.CreateCounter<long>("inspection.requests", "{request}", "Inspection requests by model and outcome (scored, refused, busy, failed).");
        _duration = _meter.CreateHistogram<double>("inspection.duration", "s", "Time from receiving an image to answering with its score, by model.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
        _anomalies = _meter.CreateCounter<long>("inspection.anomalies", "{image}", "Images scored at or above their model's threshold, by model.");
        _meter.CreateObservableGauge("inspection.queue.length", () => queue.Length, "{image}", "Images waiting to be scored.");
    }

    /// <summary>Counts a request's outcome for a model.</summary>
    public void Request(string model, string outcome) =>
        _requests.Add(1, new KeyValuePair<string, object?>("model", model), new KeyValuePair<string, object?>("outcome", outcome));

    /// <summary>Records a scored image.</summary>
    public void Scored(string model, TimeSpan elapsed, bool? anomalous)
    {
        var tag = new KeyValuePair<string, object?>("model", model);
        _duration.Record(elapsed.TotalSeconds, tag);
        if (anomalous == true)
            _anomalies.Add(1, tag);
    }

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}
