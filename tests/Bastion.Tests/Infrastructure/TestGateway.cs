using System.Net;
using System.Text.Json;
using Bastion.Hosting;

namespace Bastion.Tests.Infrastructure;

/// <summary>
/// A real gateway started in-process from YAML text, in a scratch folder, with its access log in a file that
/// tests can wait on. Listeners should say `listen: 127.0.0.1:0`; <see cref="Port"/> gives the port bound.
/// </summary>
public sealed class TestGateway : IAsyncDisposable
{
    public GatewayHost Host { get; }
    public string Dir { get; }
    public string ConfigPath { get; }
    public string LogPath { get; }

    TestGateway(GatewayHost host, string dir, string configPath, string logPath)
    {
        Host = host;
        Dir = dir;
        ConfigPath = configPath;
        LogPath = logPath;
    }

    /// <summary>Writes extra files (htpasswd, lists) into the scratch folder before the config is loaded.</summary>
    public static async Task<TestGateway> StartAsync(string yaml, IDictionary<string, string>? files = null)
    {
        var dir = Scratch.NewDir("gw");
        foreach (var (name, content) in files ?? new Dictionary<string, string>())
            await File.WriteAllTextAsync(Path.Combine(dir, name), content);
        var configPath = Path.Combine(dir, "bastion.yaml");
        var logPath = Path.Combine(dir, "access.log");
        // Tests see every line, the HTTP connections' own lines (opt-in in production) included.
        if (!yaml.Contains("logging:")) yaml = $"logging:\n  access: {logPath}\n  connections: true\n" + yaml;
        await File.WriteAllTextAsync(configPath, yaml);
        var rt = Runtime.Load(configPath);
        var host = new GatewayHost(rt, configPath);
        await host.StartAsync();
        return new TestGateway(host, dir, configPath, logPath);
    }

    public int Port(string listener) => Host.Listener(listener).BoundEndPoint!.Port;

    public string Url(string listener) => $"http://127.0.0.1:{Port(listener)}";

    public IPEndPoint EndPoint(string listener) => new(IPAddress.Loopback, Port(listener));

    /// <summary>The access log's lines parsed so far.</summary>
    public List<JsonElement> LogLines()
    {
        if (!File.Exists(LogPath)) return [];
        using var fs = new FileStream(LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var r = new StreamReader(fs);
        var text = r.ReadToEnd();
        // A line still being written (no newline yet) is left for the next poll.
        var list = new List<JsonElement>();
        foreach (var line in text[..(text.LastIndexOf('\n') + 1)].Split('\n'))
            if (line.Length > 0) list.Add(JsonDocument.Parse(line).RootElement.Clone());
        return list;
    }

    /// <summary>Waits (polling the file, with a deadline) for a log line that satisfies <paramref name="match"/>.</summary>
    public Task<JsonElement> WaitForLogAsync(Func<JsonElement, bool> match, TimeSpan? timeout = null) =>
        Wait.ForAsync(() =>
        {
            foreach (var l in LogLines())
                if (match(l)) return (true, l);
            return (false, default);
        }, timeout ?? TimeSpan.FromSeconds(10), "access log line");

    public async ValueTask DisposeAsync()
    {
        await Host.DisposeAsync();
        try { Directory.Delete(Dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

public static class LogExtensions
{
    public static string? Str(this JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public static long Num(this JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt64() : -1;
}

public static class Scratch
{
    public static string NewDir(string prefix)
    {
        var dir = Path.Combine(Path.GetTempPath(), "bastion-tests", $"{prefix}-{Guid.NewGuid():N}"[..24]);
        Directory.CreateDirectory(dir);
        return dir;
    }
}
