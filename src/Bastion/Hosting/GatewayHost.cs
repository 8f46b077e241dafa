using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Prometheus;
using Bastion.Gateway;
using Bastion.Configuration;
using Bastion.Observability;
using Bastion.Observability.Admin;

namespace Bastion.Hosting;

/// <summary>
/// Owns the running gateway: the configuration snapshot in force, the listeners built from it, the admin
/// listener, the access log and metrics. Reload builds a new snapshot aside, checks that every new address can
/// be bound, and only then swaps it in and reconciles listeners (added, removed, re-bound); open connections
/// keep running.
/// </summary>
public sealed class GatewayHost : IAsyncDisposable
{
    Runtime _current;
    AccessLog _log;
    readonly bool _ownsLog;
    long _retiredLogDrops;
    readonly Dictionary<string, IGatewayListener> _listeners = new(StringComparer.Ordinal);
    readonly List<Task> _retiring = [];
    readonly SemaphoreSlim _reloadLock = new(1, 1);
    int _draining;

    public Runtime Current => Volatile.Read(ref _current);
    public AccessLog Log => Volatile.Read(ref _log);
    public GatewayMetrics Metrics { get; } = new();
    public ConnectionRegistry Connections { get; } = new();
    public RecentEvents RecentDenials { get; } = new(100);
    public string? ConfigPath { get; }
    public DateTime StartedAt { get; } = DateTime.UtcNow;
    /// <summary>The admin listener, when the configuration has an `admin:` section.</summary>
    public AdminServer? Admin { get; private set; }
    /// <summary>True once shutdown began: /readyz answers 503 while open connections drain.</summary>
    public bool Draining => Volatile.Read(ref _draining) != 0;
    /// <summary>The last reload's outcome, for the admin API: null until a reload was tried.</summary>
    public string? LastReloadError { get; private set; }
    public DateTime? LastReloadAt { get; private set; }
    public int ReloadCount { get; private set; }
    /// <summary>Written to for reload outcomes and admin start/stop (stderr in `bastion run`).</summary>
    public TextWriter Diagnostics { get; set; } = Console.Error;

    public IReadOnlyDictionary<string, IGatewayListener> Listeners
    {
        get { lock (_listeners) return new Dictionary<string, IGatewayListener>(_listeners); }
    }

    public GatewayHost(Runtime runtime, string? configPath, AccessLog? log = null)
    {
        _current = runtime;
        ConfigPath = configPath;
        _ownsLog = log is null;
        _log = log ?? OpenLog(runtime.Config);
        Metrics.BeforeCollect(UpdateGauges);
    }

    static AccessLog OpenLog(BastionConfig c)
    {
        var target = LogTarget(c);
        try { return new AccessLog(target, c.Logging); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or SocketException or ArgumentException)
        {
            throw new StartupException($"cannot open access log {Describe(target, c)}: {StartupFault.Describe(e)}", e);
        }
    }

    static string Describe(string target, BastionConfig c) => target == "syslog" ? $"syslog {c.Logging.Syslog.Address}" : target;

    /// <summary>Same target and same way of writing: a stdout or syslog log is kept across a reload.</summary>
    static bool SameOutput(LoggingConfig a, LoggingConfig b) =>
        a.Format == b.Format && a.Connections == b.Connections && a.Syslog with { Pos = default } == b.Syslog with { Pos = default };

    static string LogTarget(BastionConfig c) => c.Path is null ? c.Logging.Access : ResolveLog(c);

    static string ResolveLog(BastionConfig c) =>
        c.Logging.Access is "stdout" or "-" or "off" or "none" or "syslog" ? c.Logging.Access : c.Resolve(c.Logging.Access);

    void UpdateGauges()
    {
        foreach (var (name, l) in Listeners) Metrics.ListenerUp.WithLabels(name, ListenerTypes.Name(l.Type)).Set(l.IsRunning ? 1 : 0);
        var log = Log;
        Metrics.LogDropped.IncTo(Interlocked.Read(ref _retiredLogDrops) + log.Dropped);
        Metrics.LogWritten.IncTo(log.Written);
    }

    static IGatewayListener Create(GatewayHost host, ListenerConfig l) =>
        ListenerFactory.Create(new ListenerContext(host, l.Name, l.Type), l);

    public async Task StartAsync(CancellationToken ct = default)
    {
        foreach (var l in Current.Config.Listeners)
        {
            var listener = Create(this, l);
            try { await listener.StartAsync(ct).ConfigureAwait(false); }
            catch (Exception e) when (StartupFault.IsExpected(e))
            {
                await listener.DisposeAsync().ConfigureAwait(false);
                throw new StartupException($"listener '{l.Name}': {StartFailure(e, l.Listen)}", e);
            }
            lock (_listeners) _listeners[l.Name] = listener;
        }
        if (Current.Config.Admin is { } admin)
        {
            var server = new AdminServer(this, admin);
            try { await server.StartAsync(ct).ConfigureAwait(false); }
            catch (Exception e) when (StartupFault.IsExpected(e))
            {
                await server.DisposeAsync().ConfigureAwait(false);
                throw new StartupException($"admin: {StartFailure(e, admin.Listen)}", e);
            }
            Admin = server;
        }
    }

    /// <summary>"cannot listen on ADDR: why" for a bind, else the part's own message (certificate, file).</summary>
    static string StartFailure(Exception e, HostPort listen)
    {
        for (var x = e; x is not null; x = x.InnerException)
            if (x is SocketException) return $"cannot listen on {listen}: {StartupFault.Describe(x)}";
        return StartupFault.Describe(e);
    }

    public IGatewayListener Listener(string name)
    {
        lock (_listeners) return _listeners[name];
    }

    /// <summary>Loads the file again; on any error the running configuration stays and the error is returned.</summary>
    public Task<string?> ReloadAsync(CancellationToken ct = default) => ReloadAsync("request", ct);

    /// <summary>
    /// Reload, saying what triggered it (SIGHUP, file change, test): the outcome goes to <see cref="Diagnostics"/>
    /// and the metrics either way.
    /// </summary>
    public async Task<string?> ReloadAsync(string trigger, CancellationToken ct = default)
    {
        await _reloadLock.WaitAsync(ct).ConfigureAwait(false);
        string? outcome = "reload failed";
        try
        {
            if (Draining) return "shutting down";
            ReloadStarting?.Invoke();
            outcome = await ReloadLockedAsync(trigger, ct).ConfigureAwait(false);
            return outcome;
        }
        finally
        {
            _reloadLock.Release();
            if (!Draining) ReloadFinished?.Invoke(outcome);
        }
    }

    /// <summary>Raised when a reload begins (systemd's RELOADING=1), and when it ended with its error or null.</summary>
    public event Action? ReloadStarting;
    public event Action<string?>? ReloadFinished;

    async Task<string?> ReloadLockedAsync(string trigger, CancellationToken ct)
    {
        {
            var sw = Stopwatch.StartNew();
            LastReloadAt = DateTime.UtcNow;
            ReloadCount++;
            Runtime next;
            try
            {
                next = Runtime.Load(ConfigPath, Current.Generation + 1);
                Preflight(next.Config);
            }
            catch (ConfigException e)
            {
                LastReloadError = e.Message;
                Metrics.Reloads.WithLabels("failure").Inc();
                Metrics.LastReloadSuccess.Set(0);
                Metrics.LastReloadDuration.Set(sw.Elapsed.TotalSeconds);
                Diagnostics.WriteLine($"bastion: reload ({trigger}) refused, the previous configuration (generation {Current.Generation}) stays in force:");
                foreach (var err in e.Errors) Diagnostics.WriteLine($"  {err}");
                return e.Message;
            }
            var old = Current;
            var oldByName = old.Config.Listeners.ToDictionary(l => l.Name);
            var newByName = next.Config.Listeners.ToDictionary(l => l.Name);
            Volatile.Write(ref _current, next);
            if (_ownsLog) ReopenLog(next.Config);

            // Listeners whose bind or type changed are replaced; others keep their sockets and see the new snapshot.
            // All removals first, so that a port can move from one listener to another.
            var errors = new List<string>();
            foreach (var (name, oldCfg) in oldByName)
            {
                if (newByName.TryGetValue(name, out var n) && SameBinding(oldCfg, n)) continue;
                IGatewayListener? gone;
                lock (_listeners) _listeners.Remove(name, out gone);
                if (gone is not null) Retire(gone, oldCfg.Limits.DrainTimeout);
            }
            foreach (var (name, cfg) in newByName)
            {
                bool exists;
                lock (_listeners) exists = _listeners.ContainsKey(name);
                if (exists) continue;
                try
                {
                    var listener = Create(this, cfg);
                    await listener.StartAsync(ct).ConfigureAwait(false);
                    lock (_listeners) _listeners[name] = listener;
                }
                catch (Exception e) when (e is SocketException or IOException or InvalidOperationException)
                {
                    errors.Add($"listener '{name}': cannot listen on {cfg.Listen}: {e.Message}");
                }
            }
            if (await ReconcileAdminAsync(old.Config.Admin, next.Config.Admin, ct).ConfigureAwait(false) is { } adminError)
                errors.Add(adminError);

            LastReloadError = errors.Count > 0 ? string.Join("; ", errors) : null;
            Metrics.Reloads.WithLabels(errors.Count > 0 ? "partial" : "success").Inc();
            Metrics.LastReloadSuccess.Set(errors.Count > 0 ? 0 : 1);
            Metrics.LastReloadTimestamp.SetToCurrentTimeUtc();
            Metrics.ConfigGeneration.Set(next.Generation);
            Metrics.LastReloadDuration.Set(sw.Elapsed.TotalSeconds);
            Diagnostics.WriteLine(LastReloadError is null
                ? $"bastion: configuration reloaded ({trigger}): generation {next.Generation} in force after {sw.Elapsed.TotalMilliseconds:0.#} ms"
                : $"bastion: configuration reloaded ({trigger}) with errors: generation {next.Generation}: {LastReloadError}");
            return LastReloadError;
        }
    }

    /// <summary>
    /// Refuses a configuration whose new addresses cannot be bound (in use by another program, no permission),
    /// before anything is swapped: a reload is all or nothing rather than a gateway with a listener missing.
    /// </summary>
    void Preflight(BastionConfig next)
    {
        var held = new List<IPEndPoint>();
        lock (_listeners)
            foreach (var l in _listeners.Values)
                if (l.BoundEndPoint is { } ep) held.Add(ep);
        if (Admin?.BoundEndPoint is { } aep) held.Add(aep);
        var cur = Current.Config;
        var errors = new List<ConfigError>();
        foreach (var l in next.Listeners)
        {
            if (cur.Listeners.FirstOrDefault(o => o.Name == l.Name) is { } o && SameBinding(o, l)) continue;
            if (CannotBind(l.Listen, held) is { } why) errors.Add(new ConfigError(l.Pos, $"listener '{l.Name}': cannot listen on {l.Listen}: {why}"));
        }
        if (next.Admin is { } a && a.Listen != cur.Admin?.Listen && CannotBind(a.Listen, held) is { } whyAdmin)
            errors.Add(new ConfigError(a.Pos, $"admin: cannot listen on {a.Listen}: {whyAdmin}"));
        if (errors.Count > 0) throw new ConfigException(errors);
    }

    static string? CannotBind(HostPort hp, List<IPEndPoint> held)
    {
        if (hp.Port == 0) return null;
        IPEndPoint ep;
        try { ep = ListenSockets.EndPoint(hp); }
        catch (InvalidOperationException e) { return e.Message; }
        // An address we hold now is freed by the reconcile before it is bound again.
        if (held.Any(h => h.Port == ep.Port)) return null;
        try
        {
            ListenSockets.Open(ep, backlog: 0).Dispose();
            return null;
        }
        catch (SocketException e) { return e.Message; }
    }

    /// <summary>Stops accepting on a listener a reload removed and lets its open connections finish in the background.</summary>
    void Retire(IGatewayListener gone, TimeSpan drain)
    {
        var t = StopDetached(gone, drain);
        lock (_retiring)
        {
            _retiring.RemoveAll(r => r.IsCompleted);
            _retiring.Add(t);
        }
    }

    static async Task StopDetached(IGatewayListener l, TimeSpan drain)
    {
        // The token source lives as long as the drain: disposing it early would disarm the deadline.
        using var cts = new CancellationTokenSource(drain);
        try { await l.StopAsync(cts.Token).ConfigureAwait(false); }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException or OperationCanceledException) { }
    }

    /// <summary>A reload re-opens a file log, so that a log rotated away (SIGHUP after logrotate) is started anew.</summary>
    void ReopenLog(BastionConfig next)
    {
        var target = LogTarget(next);
        var old = Log;
        if (target == old.Target && SameOutput(old.Options, next.Logging) && target is "stdout" or "-" or "off" or "none" or "syslog") return;
        AccessLog fresh;
        try { fresh = new AccessLog(target, next.Logging); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or SocketException or ArgumentException)
        {
            Diagnostics.WriteLine($"bastion: cannot open access log {Describe(target, next)}: {StartupFault.Describe(e)}; still writing to {old.Target}");
            return;
        }
        Volatile.Write(ref _log, fresh);
        _ = Task.Run(async () =>
        {
            await old.DisposeAsync().ConfigureAwait(false);
            Interlocked.Add(ref _retiredLogDrops, old.Dropped);
        });
    }

    async Task<string?> ReconcileAdminAsync(AdminConfig? before, AdminConfig? after, CancellationToken ct)
    {
        if (Admin is { } running && after is not null && before?.Listen == after.Listen)
        {
            running.Apply(after);
            return null;
        }
        if (Admin is { } stale)
        {
            Admin = null;
            await stale.DisposeAsync().ConfigureAwait(false);
        }
        if (after is null) return null;
        try
        {
            var server = new AdminServer(this, after);
            await server.StartAsync(ct).ConfigureAwait(false);
            Admin = server;
            return null;
        }
        catch (Exception e) when (e is IOException or SocketException or InvalidOperationException)
        {
            return $"admin: cannot listen on {after.Listen}: {e.Message}";
        }
    }

    static bool SameBinding(ListenerConfig a, ListenerConfig b) =>
        a.Type == b.Type && a.Listen == b.Listen &&
        a.Tls.Select(t => (t.Cert, t.Key)).SequenceEqual(b.Tls.Select(t => (t.Cert, t.Key)));

    /// <summary>
    /// Graceful stop: every listener stops accepting at once, open connections get until <paramref name="drain"/>
    /// to finish, then the rest are closed; the admin listener goes last so that the drain can be watched.
    /// </summary>
    public async Task StopAsync(TimeSpan drain)
    {
        Interlocked.Exchange(ref _draining, 1);
        using var cts = new CancellationTokenSource(drain);
        List<IGatewayListener> all;
        lock (_listeners) all = [.. _listeners.Values];
        Task[] retiring;
        lock (_retiring) retiring = [.. _retiring];
        await Task.WhenAll(all.Select(l => l.StopAsync(cts.Token))).ConfigureAwait(false);
        // Listeners retired by a reload have their own deadline; do not wait past ours for them.
        await Task.WhenAny(Task.WhenAll(retiring), Task.Delay(drain + TimeSpan.FromSeconds(2))).ConfigureAwait(false);
        await _reloadLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (Admin is { } admin)
            {
                Admin = null;
                await admin.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally { _reloadLock.Release(); }
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
