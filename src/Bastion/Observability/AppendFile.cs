using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Bastion.Observability;

/// <summary>
/// Opens a log file with O_APPEND, as nginx and Squid do. .NET's FileMode.Append only seeks to the end once and
/// then writes at its own position, so two writers (the old log draining after a reload and the new one, or
/// another process) overwrite each other's lines; with O_APPEND every write lands at the end of the file.
/// </summary>
static class AppendFile
{
    const int O_WRONLY = 0x1, O_CREAT = 0x40, O_APPEND = 0x400, O_CLOEXEC = 0x80000;

    [DllImport("libc", SetLastError = true, EntryPoint = "open")]
    static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, int mode);

    public static Stream Open(string path)
    {
        if (!OperatingSystem.IsLinux())
            return new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0);
        int fd = Open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, Convert.ToInt32("640", 8));
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            var message = Marshal.GetPInvokeErrorMessage(errno);
            // As .NET's own FileStream does: the errno's words as the innermost message.
            throw errno is 13 or 1 ? new UnauthorizedAccessException($"Access to the path '{path}' is denied.", new IOException(message))
                : new IOException(message);
        }
        // Linux's pwrite on an O_APPEND descriptor appends whatever offset FileStream passes.
        return new FileStream(new SafeFileHandle(fd, ownsHandle: true), FileAccess.Write, bufferSize: 0);
    }
}
