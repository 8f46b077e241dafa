using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Admin;

/// <summary>Talks to a gateway's admin listener the way an operator's tools would: plain HTTP on loopback.</summary>
public static class AdminHttp
{
    static readonly HttpClient Client = new(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.FromSeconds(5) })
    {
        Timeout = TimeSpan.FromSeconds(15),
    };

    public static async Task<(HttpStatusCode Status, string Body)> GetAsync(int port, string path, string? token = null, string? host = null)
    {
        using var req = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{port}{path}");
        if (token is not null) req.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        if (host is not null) req.Headers.Host = host;
        using var resp = await Client.SendAsync(req);
        return (resp.StatusCode, await resp.Content.ReadAsStringAsync());
    }

    public static async Task<JsonElement> JsonAsync(int port, string path, string? token = null)
    {
        var (status, body) = await GetAsync(port, path, token);
        Assert.True(status == HttpStatusCode.OK, $"{path}: {(int)status} {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    /// <summary>The value of one sample in Prometheus text (labels given as they appear, in order), or null.</summary>
    public static double? Sample(string metrics, string name, string labels = "")
    {
        var key = labels.Length > 0 ? $"{name}{{{labels}}} " : $"{name} ";
        foreach (var line in metrics.Split('\n'))
            if (line.StartsWith(key, StringComparison.Ordinal))
                return double.Parse(line[key.Length..].Trim(), CultureInfo.InvariantCulture);
        return null;
    }

    /// <summary>The sum of every sample of a metric whose label text contains all of <paramref name="parts"/>.</summary>
    public static double Sum(string metrics, string name, params string[] parts)
    {
        double total = 0;
        foreach (var line in metrics.Split('\n'))
        {
            var m = Regex.Match(line, $@"^{Regex.Escape(name)}(\{{[^}}]*\}})? (\S+)$");
            if (!m.Success) continue;
            if (parts.All(p => m.Groups[1].Value.Contains(p, StringComparison.Ordinal)))
                total += double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        }
        return total;
    }
}
