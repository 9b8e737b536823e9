using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace InspectionService.Tests;

/// <summary>The history's persistence and retention, and the queue's back-pressure.</summary>
[TestClass]
public sealed class HistoryAndQueueTests
{
    [TestMethod]
    public async Task TheSqliteHistorySurvivesARestart()
    {
        string models = ServiceFixture.NewModelsFolder(), data = ServiceFixture.NewFolder();
        string image = ServiceFixture.TestImages[^1];
        string id;
        float score;
        using (var first = ServiceFixture.NewService(models, data))
        using (var client = first.CreateClient())
        {
            var answer = await ServiceFixture.JsonAsync(await ServiceFixture.PostImageAsync(client, "cfa", File.ReadAllBytes(image), "restart.png"));
            id = answer.GetProperty("id").GetString()!;
            score = answer.GetProperty("score").GetSingle();
        }
        Assert.IsTrue(File.Exists(Path.Combine(data, "inspections.db")));

        using var second = ServiceFixture.NewService(models, data);
        using var again = second.CreateClient();
        var record = await again.GetFromJsonAsync<JsonElement>($"/api/inspections/{id}");
        Assert.AreEqual(score, record.GetProperty("score").GetSingle());
        Assert.AreEqual("restart.png", record.GetProperty("fileName").GetString());
        Assert.AreEqual(ServiceFixture.Version("cfa"), record.GetProperty("modelVersion").GetString());
        Assert.AreEqual(HttpStatusCode.OK, (await again.GetAsync($"/api/inspections/{id}/overlay.png")).StatusCode);
        Assert.AreEqual(id, (await again.GetFromJsonAsync<JsonElement>("/api/inspections")).EnumerateArray().Single().GetProperty("id").GetString());
    }

    [TestMethod]
    public async Task RetentionDeletesTheOldestRecordsWithTheirFiles()
    {
        string data = ServiceFixture.NewFolder();
        using var service = ServiceFixture.NewService(ServiceFixture.NewModelsFolder(), data, ("RetentionCount", "2"));
        using var client = service.CreateClient();
        var ids = new List<string>();
        for (int i = 0; i < 3; i++)
            ids.Add((await ServiceFixture.JsonAsync(await ServiceFixture.PostImageAsync(client, "cfa", File.ReadAllBytes(ServiceFixture.TestImages[i])))).GetProperty("id").GetString()!);

        var kept = (await client.GetFromJsonAsync<JsonElement>("/api/inspections?limit=10")).EnumerateArray().Select(r => r.GetProperty("id").GetString()).ToList();
        CollectionAssert.AreEqual(new[] { ids[2], ids[1] }, kept);
        Assert.AreEqual(HttpStatusCode.NotFound, (await client.GetAsync($"/api/inspections/{ids[0]}")).StatusCode);
        Assert.IsEmpty(Directory.GetFiles(data, ids[0] + ".*", SearchOption.AllDirectories), "the oldest image and overlay are deleted");
        Assert.HasCount(2, Directory.GetFiles(Path.Combine(data, "images")));
        Assert.HasCount(2, Directory.GetFiles(Path.Combine(data, "overlays")));
    }

    [TestMethod]
    public async Task AFullQueueAnswers503WithRetryAfterAndStoresNothing()
    {
        // The worker is left out so the queue fills; it is started by hand once the refusal is seen.
        string data = ServiceFixture.NewFolder();
        using var service = ServiceFixture.NewService(ServiceFixture.NewModelsFolder(), data,
            services => services.Remove(services.Single(d => d.ServiceType == typeof(IHostedService) && d.ImplementationType == typeof(InspectionQueueWorker))),
            ("QueueCapacity", "2"), ("RetryAfterSeconds", "3"));
        using var client = service.CreateClient();
        var queue = service.Services.GetRequiredService<InspectionQueue>();
        byte[] image = File.ReadAllBytes(ServiceFixture.TestImages[0]);

        var waiting = new[] { ServiceFixture.PostImageAsync(client, "cfa", image), ServiceFixture.PostImageAsync(client, "dfm", image) };
        await ServiceFixture.WaitUntilAsync(() => Task.FromResult(queue.Length == 2), "two queued images");
        var refused = await ServiceFixture.PostImageAsync(client, "cfa", image);
        await ServiceEndpointTests.AssertProblemAsync(refused, HttpStatusCode.ServiceUnavailable, "queue holds 2 images");
        Assert.AreEqual("3", refused.Headers.RetryAfter?.ToString());

        using var stop = new CancellationTokenSource();
        var worker = queue.RunAsync(stop.Token);
        foreach (var response in await Task.WhenAll(waiting))
            Assert.AreEqual(HttpStatusCode.OK, response.StatusCode, "the queued requests are answered once the worker runs");
        await stop.CancelAsync();
        await worker;
        Assert.AreEqual(2, (await client.GetFromJsonAsync<JsonElement>("/api/inspections")).GetArrayLength(), "the refused request left no record");
        Assert.HasCount(2, Directory.GetFiles(Path.Combine(data, "images")), "nor an image");
    }
}
