using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;

namespace Bastion.Identity;

public enum LoginResult : byte
{
    Ok,
    /// <summary>Unknown user or wrong password: the caller cannot tell which, and neither can the client's clock.</summary>
    Bad,
    /// <summary>Too many failures from this client address lately: refused without checking.</summary>
    Throttled,
}

/// <summary>
/// Users from the htpasswd file, with a cache of verified credentials so that authenticated traffic does not
/// pay bcrypt on every request. Keys are a salted SHA-256 of user and password (no password is kept);
/// entries expire; the cache is bounded. bcrypt checks that miss the cache run a few at a time, so that a
/// flood of bad passwords queues behind itself instead of taking every core from the traffic. Unknown users are
/// checked against a dummy hash of the same kind and cost, and failures are throttled per client address
/// (<see cref="LoginThrottle"/>).
/// </summary>
public sealed class IdentityStore
{
    readonly Dictionary<string, string> _hashes;
    readonly ConcurrentDictionary<Key, long> _verified = new();
    readonly ConcurrentDictionary<Key, long> _rejected = new();
    readonly SemaphoreSlim _bcryptGate = new(Math.Max(1, Environment.ProcessorCount / 2));
    // Made on the first password check: a gateway without users never loads the crypto library (OpenSSL: ~5 MiB resident).
    byte[]? _salt;
    static readonly long TtlTicks = TimeSpan.FromMinutes(5).Ticks;
    static readonly long NegativeTtlTicks = TimeSpan.FromSeconds(10).Ticks;
    const int MaxEntries = 10_000;

    public int UserCount => _hashes.Count;

    public long FailureCount;

    /// <summary>Password checks that missed the cache and paid for bcrypt/SHA (for tests and metrics).</summary>
    public long HashChecks => Interlocked.Read(ref _hashChecks);
    long _hashChecks;

    string? _dummyHash;
    readonly LoginThrottle _throttle = new();

    public IdentityStore(Dictionary<string, string> hashes)
    {
        _hashes = hashes;
    }

    byte[] Salt => Volatile.Read(ref _salt) ?? Interlocked.CompareExchange(ref _salt, RandomNumberGenerator.GetBytes(16), null) ?? _salt!;

    string DummyHash => Volatile.Read(ref _dummyHash)
        ?? Interlocked.CompareExchange(ref _dummyHash, Htpasswd.DummyLike(_hashes.Values.FirstOrDefault()), null) ?? _dummyHash!;

    public static readonly IdentityStore Empty = new([]);

    public bool HasUser(string user) => _hashes.ContainsKey(user);

    readonly record struct Key(Int128 A, Int128 B);

    Key MakeKey(string user, string password)
    {
        Span<byte> digest = stackalloc byte[32];
        var bytes = Encoding.UTF8.GetBytes($"{user}\0{password}");
        using var h = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, Salt);
        h.AppendData(bytes);
        h.GetHashAndReset(digest);
        CryptographicOperations.ZeroMemory(bytes);
        return new Key(System.Buffers.Binary.BinaryPrimitives.ReadInt128LittleEndian(digest),
            System.Buffers.Binary.BinaryPrimitives.ReadInt128LittleEndian(digest[16..]));
    }

    /// <summary>Checks credentials without a client address (no throttling): prefer <see cref="LoginAsync"/>.</summary>
    public async ValueTask<bool> VerifyAsync(string user, string password, CancellationToken ct = default) =>
        await LoginAsync(user, password, null, ct).ConfigureAwait(false) == LoginResult.Ok;

    /// <summary>
    /// Checks credentials from a client address. An address that failed too often lately is refused at once; each
    /// address has one check in flight at a time; a cache miss costs one bcrypt whether the user exists or not.
    /// </summary>
    public async ValueTask<LoginResult> LoginAsync(string user, string password, IPAddress? client, CancellationToken ct = default)
    {
        // Before the caches: throttled guesses must not be answered from them either.
        if (client is not null && !_throttle.MayTry(client)) return Throttled();
        var key = MakeKey(user, password);
        if (Cached(key) is { } cached) return cached ? LoginResult.Ok : Failed(client);
        using var slot = client is null ? null : await _throttle.EnterAsync(client, ct).ConfigureAwait(false);
        // Settled while this one waited its turn behind the same address's earlier attempts?
        if (client is not null && !_throttle.MayTry(client)) return Throttled();
        if (Cached(key) is { } settled) return settled ? LoginResult.Ok : Failed(client);

        bool known = _hashes.TryGetValue(user, out var hash);
        hash ??= DummyHash;
        await _bcryptGate.WaitAsync(ct).ConfigureAwait(false);
        bool ok;
        Interlocked.Increment(ref _hashChecks);
        // Off the I/O threads: a 100 ms hash must never run on a socket completion.
        try { ok = await Task.Run(() => Htpasswd.Verify(password, hash), ct).ConfigureAwait(false) && known; }
        finally { _bcryptGate.Release(); }
        long now = DateTime.UtcNow.Ticks;
        var cache = ok ? _verified : _rejected;
        if (cache.Count >= MaxEntries) Prune(cache, now);
        cache[key] = now + (ok ? TtlTicks : NegativeTtlTicks);
        return ok ? LoginResult.Ok : Failed(client);
    }

    bool? Cached(Key key)
    {
        long now = DateTime.UtcNow.Ticks;
        if (_verified.TryGetValue(key, out var exp) && exp > now) return true;
        if (_rejected.TryGetValue(key, out var rexp) && rexp > now) return false;
        return null;
    }

    LoginResult Failed(IPAddress? client)
    {
        Interlocked.Increment(ref FailureCount);
        if (client is not null) _throttle.Failed(client);
        return LoginResult.Bad;
    }

    LoginResult Throttled()
    {
        Interlocked.Increment(ref FailureCount);
        return LoginResult.Throttled;
    }

    static void Prune(ConcurrentDictionary<Key, long> cache, long now)
    {
        foreach (var (k, exp) in cache)
            if (exp <= now) cache.TryRemove(k, out _);
        if (cache.Count >= MaxEntries) cache.Clear();
    }

    /// <summary>Parses an HTTP Basic credential (`Basic base64(user:pass)`).</summary>
    public static bool TryParseBasic(string? header, out string user, out string password)
    {
        user = password = "";
        if (header is null || !header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase)) return false;
        try
        {
            var text = Encoding.UTF8.GetString(Convert.FromBase64String(header[6..].Trim()));
            int colon = text.IndexOf(':');
            if (colon < 0) return false;
            user = text[..colon];
            password = text[(colon + 1)..];
            return true;
        }
        catch (FormatException) { return false; }
    }
}
