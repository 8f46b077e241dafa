using Prometheus;
using Bastion.Configuration;
using Bastion.Observability;

namespace Bastion.Hosting;

/// <summary>
/// Owns the running gateway: the configuration snapshot in force, the listeners built from it, the access log
/// and metrics. Reload builds a new snapshot aside, and only if it is valid swaps it in and reconciles listeners
/// (added, removed, re-bound); open connections keep running.
/// </summary>
public sealed class GatewayHost : IAsyncDisposable
{
    Runtime _current;
    readonly Dictionary<string, IGatewayListener> _listeners = new(StringComparer.Ordinal);
    readonly Dictionary<string, ListenerContext> _contexts = new(StringComparer.Ordinal);
    readonly SemaphoreSlim _reloadLock = new(1, 1);

    public Runtime Current => Volatile.Read(ref _current);
    public AccessLog Log { get; }
    public GatewayMetrics Metrics { get; } = new();
    public ConnectionRegistry Connections { get; } = new();
    public RecentEvents RecentDenials { get; } = new(100);
    public string? ConfigPath { get; }
    public DateTime StartedAt { get; } = DateTime.UtcNow;
    /// <summary>The last reload's outcome, for the admin API: null until a reload was tried.</summary>
    public string? LastReloadError { get; private set; }
    public DateTime? LastReloadAt { get; private set; }

    public IReadOnlyDictionary<string, IGatewayListener> Listeners
    {
        get { lock (_listeners) return new Dictionary<string, IGatewayListener>(_listeners); }
    }

    public GatewayHost(Runtime runtime, string? configPath, AccessLog? log = null)
    {
        _current = runtime;
        ConfigPath = configPath;
        Log = log ?? new AccessLog(runtime.Config.Path is null ? runtime.Config.Logging.Access : ResolveLog(runtime.Config));
    }

    static string ResolveLog(BastionConfig c) =>
        c.Logging.Access is "stdout" or "-" or "off" or "none" ? c.Logging.Access : c.Resolve(c.Logging.Access);

    IGatewayListener Create(ListenerConfig l)
    {
        var ctx = new ListenerContext(this, l.Name, l.Type);
        _contexts[l.Name] = ctx;
        return ListenerFactory.Create(ctx, l);
    }

    public async Task StartAsync(CancellationToken ct = default)
    {
        foreach (var l in Current.Config.Listeners)
        {
            var listener = Create(l);
            await listener.StartAsync(ct).ConfigureAwait(false);
            lock (_listeners) _listeners[l.Name] = listener;
        }
    }

    public IGatewayListener Listener(string name)
    {
        lock (_listeners) return _listeners[name];
    }

    /// <summary>Loads the file again; on any error the running configuration stays and the error is returned.</summary>
    public async Task<string?> ReloadAsync(CancellationToken ct = default)
    {
        await _reloadLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            LastReloadAt = DateTime.UtcNow;
            Runtime next;
            try { next = Runtime.Load(ConfigPath, Current.Generation + 1); }
            catch (ConfigException e)
            {
                LastReloadError = e.Message;
                Metrics.Reloads.WithLabels("failure").Inc();
                Metrics.LastReloadSuccess.Set(0);
                return e.Message;
            }
            var old = Current;
            var oldByName = old.Config.Listeners.ToDictionary(l => l.Name);
            var newByName = next.Config.Listeners.ToDictionary(l => l.Name);
            Volatile.Write(ref _current, next);

            // Listeners whose bind or type changed are replaced; others keep their sockets and see the new snapshot.
            var errors = new List<string>();
            foreach (var (name, oldCfg) in oldByName)
            {
                if (newByName.TryGetValue(name, out var n) && SameBinding(oldCfg, n)) continue;
                IGatewayListener? gone;
                lock (_listeners) { _listeners.Remove(name, out gone); }
                if (gone is not null)
                {
                    // Stop accepting now; let its open connections finish in the background.
                    using var cts = new CancellationTokenSource(oldCfg.Limits.DrainTimeout);
                    _ = gone.StopAsync(cts.Token);
                }
            }
            foreach (var (name, cfg) in newByName)
            {
                bool exists;
                lock (_listeners) exists = _listeners.ContainsKey(name);
                if (exists) continue;
                try
                {
                    var listener = Create(cfg);
                    await listener.StartAsync(ct).ConfigureAwait(false);
                    lock (_listeners) _listeners[name] = listener;
                }
                catch (Exception e)
                {
                    errors.Add($"listener '{name}': cannot listen on {cfg.Listen}: {e.Message}");
                }
            }
            LastReloadError = errors.Count > 0 ? string.Join("; ", errors) : null;
            Metrics.Reloads.WithLabels(errors.Count > 0 ? "partial" : "success").Inc();
            Metrics.LastReloadSuccess.Set(errors.Count > 0 ? 0 : 1);
            Metrics.LastReloadTimestamp.SetToCurrentTimeUtc();
            return LastReloadError;
        }
        finally { _reloadLock.Release(); }
    }

    static bool SameBinding(ListenerConfig a, ListenerConfig b) =>
        a.Type == b.Type && a.Listen == b.Listen && a.Tls.SequenceEqual(b.Tls);

    public async Task StopAsync(TimeSpan drain)
    {
        using var cts = new CancellationTokenSource(drain);
        List<IGatewayListener> all;
        lock (_listeners) all = [.. _listeners.Values];
        await Task.WhenAll(all.Select(l => l.StopAsync(cts.Token))).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        await Log.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>A small ring of recent events (the dashboard's "recent denials").</summary>
public sealed class RecentEvents(int capacity)
{
    readonly Queue<AccessEvent> _items = new();

    public void Add(AccessEvent e)
    {
        lock (_items)
        {
            _items.Enqueue(e);
            while (_items.Count > capacity) _items.Dequeue();
        }
    }

    public AccessEvent[] Snapshot()
    {
        lock (_items) return [.. _items.Reverse()];
    }
}
