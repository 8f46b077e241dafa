using System.Text.Json;
using Bastion.Configuration;
using Bastion.Hosting;

namespace Bastion.Observability.Admin;

/// <summary>The JSON documents of the admin API, written straight to a buffer (no DTO graph per request).</summary>
public static class AdminApi
{
    static string Iso(DateTime t) => t.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'");

    public static void WriteStats(Utf8JsonWriter w, GatewayHost host, AdminServer admin, long since)
    {
        var rt = host.Current;
        var running = host.Listeners;
        var metrics = host.Metrics;
        w.WriteStartObject();
        w.WriteString("version", Cli.Commands.Version);
        w.WriteString("now", Iso(DateTime.UtcNow));
        w.WriteString("started", Iso(host.StartedAt));
        w.WriteNumber("uptime_s", Math.Round((DateTime.UtcNow - host.StartedAt).TotalSeconds, 1));
        w.WriteNumber("generation", rt.Generation);
        w.WriteString("config_path", rt.Config.Path is null ? null : Path.GetFullPath(rt.Config.Path));
        w.WriteString("loaded_at", Iso(rt.LoadedAt));
        w.WriteBoolean("draining", host.Draining);
        w.WriteBoolean("token_required", admin.RequiresToken);

        w.WriteStartObject("reload");
        w.WriteNumber("count", host.ReloadCount);
        if (host.LastReloadAt is { } at) w.WriteString("last_at", Iso(at));
        else w.WriteNull("last_at");
        w.WriteBoolean("ok", host.LastReloadError is null);
        w.WriteString("last_error", host.LastReloadError);
        w.WriteEndObject();

        long active = 0, accepted = 0, bin = 0, bout = 0, allow = 0, deny = 0, auth = 0;
        w.WriteStartArray("listeners");
        // Configured listeners first (up or not), then ones a reload removed that still have connections draining.
        var names = rt.Config.Listeners.Select(l => l.Name).ToList();
        foreach (var name in metrics.CountedListeners)
            if (!names.Contains(name)) names.Add(name);
        foreach (var name in names)
        {
            var cfg = rt.Listener(name);
            running.TryGetValue(name, out var l);
            var c = metrics.Counters(name);
            active += c.Active; accepted += c.Accepted; bin += c.BytesIn; bout += c.BytesOut;
            allow += c.Allowed; deny += c.Denied; auth += c.AuthFailures;
            if (cfg is null && c.Active == 0) continue;
            w.WriteStartObject();
            w.WriteString("name", name);
            w.WriteString("type", cfg is not null ? ListenerTypes.Name(cfg.Type) : l is not null ? ListenerTypes.Name(l.Type) : null);
            w.WriteString("listen", cfg?.Listen.ToString());
            w.WriteString("bound", l?.BoundEndPoint?.ToString());
            w.WriteString("state", cfg is null ? "removed" : l is { IsRunning: true } ? "up" : "down");
            w.WriteString("policy", cfg?.Policy);
            w.WriteNumber("active", c.Active);
            w.WriteNumber("accepted", c.Accepted);
            w.WriteNumber("bytes_in", c.BytesIn);
            w.WriteNumber("bytes_out", c.BytesOut);
            w.WriteNumber("allow", c.Allowed);
            w.WriteNumber("deny", c.Denied);
            w.WriteNumber("auth_failures", c.AuthFailures);
            // http-proxy with tls_inspection: CONNECT tunnels by what became of them.
            var tunnels = metrics.TlsTunnels(name);
            if (tunnels.Count > 0 || rt.Inspection.ContainsKey(name))
            {
                w.WriteStartObject("tls");
                foreach (var mode in (ReadOnlySpan<string>)["inspected", "spliced", "refused", "client_refused"])
                    w.WriteNumber(mode, tunnels.GetValueOrDefault(mode));
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();

        w.WriteStartObject("totals");
        w.WriteNumber("active", host.Connections.Count);
        w.WriteNumber("accepted", accepted);
        w.WriteNumber("bytes_in", bin);
        w.WriteNumber("bytes_out", bout);
        w.WriteNumber("allow", allow);
        w.WriteNumber("deny", deny);
        w.WriteNumber("auth_failures", auth);
        w.WriteNumber("log_dropped", host.Log.Dropped);
        w.WriteEndObject();

        // Decisions by verdict and rule, most frequent first: what the policy is actually doing.
        w.WriteStartArray("rules");
        foreach (var g in metrics.DecisionCounts.GroupBy(d => (d.Verdict, d.Rule)).Select(g => (g.Key.Verdict, g.Key.Rule, Count: g.Sum(x => x.Count)))
                     .OrderByDescending(g => g.Count).Take(50))
        {
            w.WriteStartObject();
            w.WriteString("verdict", g.Verdict);
            w.WriteString("rule", g.Rule);
            w.WriteNumber("count", g.Count);
            w.WriteEndObject();
        }
        w.WriteEndArray();

        w.WriteStartObject("traffic");
        w.WriteNumber("interval_s", TrafficHistory.Interval.TotalSeconds);
        w.WriteString("columns", "t_ms,bytes_in,bytes_out,allow,deny,active");
        w.WriteStartArray("samples");
        foreach (var s in admin.History.Since(since))
        {
            w.WriteStartArray();
            w.WriteNumberValue(s.UnixMs);
            w.WriteNumberValue(s.BytesIn);
            w.WriteNumberValue(s.BytesOut);
            w.WriteNumberValue(s.Allowed);
            w.WriteNumberValue(s.Denied);
            w.WriteNumberValue(s.Active);
            w.WriteEndArray();
        }
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    }

    public static void WriteConnections(Utf8JsonWriter w, GatewayHost host, int limit)
    {
        var all = host.Connections.All.OrderBy(c => c.Number).ToList();
        w.WriteStartObject();
        w.WriteNumber("count", all.Count);
        w.WriteStartArray("connections");
        foreach (var c in all.Take(limit))
        {
            w.WriteStartObject();
            w.WriteString("id", c.Id);
            w.WriteString("listener", c.Listener);
            w.WriteString("type", c.Type);
            w.WriteString("client", c.ClientText);
            w.WriteString("user", c.User);
            w.WriteString("target", c.Target);
            w.WriteString("parent", c.Parent?.Id);
            w.WriteString("started", Iso(c.Started));
            w.WriteNumber("age_s", Math.Round(c.Age.TotalSeconds, 1));
            w.WriteNumber("bytes_in", Interlocked.Read(ref c.BytesIn));
            w.WriteNumber("bytes_out", Interlocked.Read(ref c.BytesOut));
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    public static void WriteDenials(Utf8JsonWriter w, GatewayHost host, int limit)
    {
        w.WriteStartObject();
        w.WriteStartArray("denials");
        foreach (var e in host.RecentDenials.Snapshot().Take(limit))
        {
            w.WriteStartObject();
            w.WriteString("ts", Iso(e.Ts));
            w.WriteString("id", e.Id);
            w.WriteString("listener", e.Listener);
            w.WriteString("type", e.Type);
            w.WriteString("client", e.Client);
            w.WriteString("user", e.User);
            w.WriteString("request", e.Request);
            w.WriteString("rule", e.Rule);
            w.WriteString("reason", e.Reason);
            w.WriteNumber("status", e.Status);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
