using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.ML;

namespace InspectionService.Tests;

/// <summary>Models replaced on disk while the service is answering.</summary>
[TestClass]
public sealed class ModelSwapTests
{
    [TestMethod]
    public async Task AModelReplacedWhileEightClientsSendIsSwappedOnceWithoutAFailedRequest()
    {
        string models = ServiceFixture.NewModelsFolder();
        using var service = ServiceFixture.NewService(models, ServiceFixture.NewFolder(), ("ModelPollMilliseconds", "100"));
        using var client = service.CreateClient();
        string a = ServiceFixture.Version("dfm"), b = ServiceFixture.Version("dfm-b");
        var answers = new ConcurrentBag<(int Client, int Order, HttpStatusCode Status, string Body, string Image)>();
        int seenA = 0, seenB = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(90));

        async Task SendAsync(int id)
        {
            for (int order = 0; !stop.IsCancellationRequested; order++)
            {
                string image = ServiceFixture.TestImages[(id + order) % ServiceFixture.TestImages.Count];
                var response = await ServiceFixture.PostImageAsync(client, "dfm", File.ReadAllBytes(image), Path.GetFileName(image));
                string body = await response.Content.ReadAsStringAsync();
                answers.Add((id, order, response.StatusCode, body, image));
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    string version = JsonDocument.Parse(body).RootElement.GetProperty("modelVersion").GetString()!;
                    Interlocked.Increment(ref version == b ? ref seenB : ref seenA);
                }
            }
        }

        var clients = Enumerable.Range(0, 8).Select(i => Task.Run(() => SendAsync(i))).ToArray();
        await ServiceFixture.WaitUntilAsync(() => Task.FromResult(Volatile.Read(ref seenA) >= 16), "16 answers from version A");
        ServiceFixture.Replace(Path.Combine(models, "dfm.zip"), File.ReadAllBytes(ServiceFixture.Zip("dfm-b")));
        await ServiceFixture.WaitUntilAsync(() => Task.FromResult(Volatile.Read(ref seenB) >= 24), "24 answers from version B");
        await stop.CancelAsync();
        await Task.WhenAll(clients);

        Assert.IsEmpty(answers.Where(r => r.Status != HttpStatusCode.OK).ToList(), "every request succeeds during the swap");
        foreach (var perClient in answers.GroupBy(r => r.Client))
        {
            var versions = perClient.OrderBy(r => r.Order).Select(r => JsonDocument.Parse(r.Body).RootElement.GetProperty("modelVersion").GetString()).ToList();
            int firstB = versions.IndexOf(b);
            Assert.IsTrue(versions.All(v => v == a || v == b), "each answer names version A or B");
            if (firstB >= 0)
                Assert.IsTrue(versions.Skip(firstB).All(v => v == b), $"client {perClient.Key} went back to A after B: {string.Join(" ", versions.Select(v => v == a ? "A" : "B"))}");
        }
        foreach (var answer in answers)
        {
            var body = JsonDocument.Parse(answer.Body).RootElement;
            string model = body.GetProperty("modelVersion").GetString() == a ? "dfm" : "dfm-b";
            float expected = ServiceFixture.ExpectedScore(model, answer.Image);
            Assert.AreEqual(expected, body.GetProperty("score").GetSingle(), Math.Abs(expected) * 1e-5f, $"{model} on {answer.Image}");
        }
        Assert.AreNotEqual(ServiceFixture.ExpectedScore("dfm", ServiceFixture.TestImages[0]), ServiceFixture.ExpectedScore("dfm-b", ServiceFixture.TestImages[0]),
            "the two versions score differently, so the scores show which one answered");
    }

    [TestMethod]
    public async Task ADamagedOrForeignFileIsRefusedAndThePreviousVersionKeepsServing()
    {
        string models = ServiceFixture.NewModelsFolder();
        using var service = ServiceFixture.NewService(models, ServiceFixture.NewFolder(), ("ModelPollMilliseconds", "100"));
        using var client = service.CreateClient();
        string image = ServiceFixture.TestImages[1];

        byte[] damaged = File.ReadAllBytes(ServiceFixture.Zip("dfm-b"));
        damaged[damaged.Length / 4 * 3] ^= 0x10;
        ServiceFixture.Replace(Path.Combine(models, "dfm.zip"), damaged);
        File.WriteAllBytes(Path.Combine(models, "junk.zip"), "PK\u0003\u0004 not really a zip"u8.ToArray());
        File.WriteAllBytes(Path.Combine(models, "foreign.zip"), ForeignModel());

        JsonElement health = default;
        await ServiceFixture.WaitUntilAsync(async () =>
        {
            var response = await client.GetAsync("/health");
            health = await ServiceFixture.JsonAsync(response);
            return response.StatusCode == HttpStatusCode.ServiceUnavailable && health.GetProperty("failed").GetArrayLength() == 3;
        }, "the three refused files in /health");
        Assert.AreEqual("degraded", health.GetProperty("status").GetString());
        var failed = health.GetProperty("failed").EnumerateArray().ToDictionary(f => f.GetProperty("name").GetString()!, f => f.GetProperty("error").GetString()!);
        StringAssert.Contains(failed["foreign"], "not an image anomaly detector");
        StringAssert.Contains(failed["junk"], "not a loadable ML.NET model");
        StringAssert.Contains(failed["dfm"], "not a loadable ML.NET model");
        CollectionAssert.AreEqual(new[] { "cfa", "dfm" }, health.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("name").GetString()).ToArray());

        var answer = await ServiceFixture.JsonAsync(await ServiceFixture.PostImageAsync(client, "dfm", File.ReadAllBytes(image)));
        Assert.AreEqual(ServiceFixture.Version("dfm"), answer.GetProperty("modelVersion").GetString(), "version A keeps serving");
        Assert.AreEqual(ServiceFixture.ExpectedScore("dfm", image), answer.GetProperty("score").GetSingle(), Math.Abs(ServiceFixture.ExpectedScore("dfm", image)) * 1e-5f);

        // A good file in place of the damaged one is loaded, and the failures of removed files go with them.
        ServiceFixture.Replace(Path.Combine(models, "dfm.zip"), File.ReadAllBytes(ServiceFixture.Zip("dfm-b")));
        File.Delete(Path.Combine(models, "junk.zip"));
        File.Delete(Path.Combine(models, "foreign.zip"));
        await ServiceFixture.WaitUntilAsync(async () => (await client.GetAsync("/health")).StatusCode == HttpStatusCode.OK, "a healthy service again");
        var models2 = await client.GetFromJsonAsync<JsonElement>("/api/models");
        Assert.AreEqual(ServiceFixture.Version("dfm-b"), models2.EnumerateArray().Single(m => m.GetProperty("name").GetString() == "dfm").GetProperty("version").GetString());
    }

    /// <summary>A valid ML.NET model that is no detector: a min-max normaliser.</summary>
    private static byte[] ForeignModel()
    {
        var ml = new MLContext(seed: 0);
        var data = ml.Data.LoadFromEnumerable(new[] { new Number { Value = 1 }, new Number { Value = 3 } });
        var model = ml.Transforms.NormalizeMinMax("Value").Fit(data);
        using var stream = new MemoryStream();
        ml.Model.Save(model, data.Schema, stream);
        return stream.ToArray();
    }

    private sealed class Number
    {
        public float Value { get; set; }
    }
}
