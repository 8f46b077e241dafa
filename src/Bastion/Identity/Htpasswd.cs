using System.Security.Cryptography;
using System.Text;

namespace Bastion.Identity;

/// <summary>htpasswd files: `user:hash` lines with bcrypt ($2a$/$2b$/$2y$) or {SHA} hashes.</summary>
public static class Htpasswd
{
    public static Dictionary<string, string> Read(string path, List<string> problems)
    {
        var users = new Dictionary<string, string>(StringComparer.Ordinal);
        int lineNo = 0;
        foreach (var raw in File.ReadLines(path))
        {
            lineNo++;
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            int colon = line.IndexOf(':');
            if (colon <= 0)
            {
                problems.Add($"line {lineNo}: expected user:hash");
                continue;
            }
            var hash = line[(colon + 1)..];
            if (!IsSupported(hash))
            {
                problems.Add($"line {lineNo}: user '{line[..colon]}' has an unsupported hash (use bcrypt: bastion passwd, or htpasswd -B)");
                continue;
            }
            if (!IsWellFormed(hash))
            {
                problems.Add($"line {lineNo}: user '{line[..colon]}' has a malformed hash");
                continue;
            }
            users[line[..colon]] = hash;
        }
        return users;
    }

    public static bool IsSupported(string hash) =>
        hash.StartsWith("$2a$", StringComparison.Ordinal) || hash.StartsWith("$2b$", StringComparison.Ordinal)
        || hash.StartsWith("$2y$", StringComparison.Ordinal) || hash.StartsWith("{SHA}", StringComparison.Ordinal);

    // Checked at load, so that a damaged line is a config error rather than a failure at login time.
    static readonly System.Text.RegularExpressions.Regex Bcrypt = new(@"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$");

    public static bool IsWellFormed(string hash)
    {
        if (hash.StartsWith("{SHA}", StringComparison.Ordinal))
        {
            Span<byte> digest = stackalloc byte[32];
            return Convert.TryFromBase64String(hash[5..], digest, out int n) && n == 20;
        }
        return Bcrypt.IsMatch(hash);
    }

    /// <summary>bcrypt reads at most this many bytes of a password and silently ignores the rest.</summary>
    public const int BcryptMaxBytes = 72;

    /// <summary>Why a new password cannot be stored as bcrypt, or null: `bastion passwd` refuses what bcrypt would truncate.</summary>
    public static string? PasswordProblem(string password) =>
        Encoding.UTF8.GetByteCount(password) > BcryptMaxBytes
            ? $"password refused: bcrypt uses only the first {BcryptMaxBytes} bytes, this one has {Encoding.UTF8.GetByteCount(password)} (choose a shorter one)"
            : null;

    /// <summary>Checks a password against a stored hash. bcrypt is deliberately slow (~100 ms at cost 10).</summary>
    public static bool Verify(string password, string hash)
    {
        if (hash.StartsWith("{SHA}", StringComparison.Ordinal))
        {
            var digest = Convert.ToBase64String(SHA1.HashData(Encoding.UTF8.GetBytes(password)));
            return CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(digest), Encoding.ASCII.GetBytes(hash[5..]));
        }
        try
        {
            // BCrypt.Net handles $2a$/$2b$/$2y$ alike. It would ignore bytes past 72: such a password can only have
            // matched a different, shorter one, so it is refused (after the same work, so its length leaks nothing).
            bool ok = BCrypt.Net.BCrypt.Verify(password, hash);
            return ok && Encoding.UTF8.GetByteCount(password) <= BcryptMaxBytes;
        }
        catch (Exception e) when (e is BCrypt.Net.SaltParseException or BCrypt.Net.HashInformationException or ArgumentException or FormatException)
        {
            return false;
        }
    }

    /// <summary>
    /// A hash of the same kind and cost as <paramref name="like"/> that no password matches: unknown users are checked
    /// against it, so that they cost what a known user with a wrong password costs (no user enumeration by timing).
    /// </summary>
    public static string DummyLike(string? like)
    {
        if (like is not null && like.StartsWith("{SHA}", StringComparison.Ordinal))
            return "{SHA}" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(20));
        var cost = like is not null && like.Length > 7 && IsWellFormed(like) ? like[4..6] : "10";
        const string alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        // Salt and checksum drawn at random: verifying costs one full bcrypt, and matching is as likely as a collision.
        var tail = new char[53];
        for (int i = 0; i < tail.Length; i++) tail[i] = alphabet[RandomNumberGenerator.GetInt32(alphabet.Length)];
        // The salt's last character carries only 2 bits (bcrypt's base64): keep it canonical.
        tail[21] = ".Oeu"[RandomNumberGenerator.GetInt32(4)];
        return $"$2b${cost}${new string(tail)}";
    }

    public static string HashBcrypt(string password, int cost = 10) =>
        BCrypt.Net.BCrypt.HashPassword(password, cost);

    /// <summary>Adds or replaces a user, keeping the other lines (and their order) as they are.</summary>
    public static void Upsert(string path, string user, string hash)
    {
        var lines = File.Exists(path) ? File.ReadAllLines(path).ToList() : [];
        int idx = lines.FindIndex(l => l.StartsWith(user + ":", StringComparison.Ordinal));
        var entry = $"{user}:{hash}";
        if (idx >= 0) lines[idx] = entry;
        else lines.Add(entry);
        var tmp = path + ".tmp";
        File.WriteAllLines(tmp, lines);
        File.Move(tmp, path, overwrite: true);
    }
}
